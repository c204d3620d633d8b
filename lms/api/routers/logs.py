"""GET /v1/logs: the stored logs, filtered, searched and paged; one by its id; their facets and
export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Path, Query
from starlette.responses import Response, StreamingResponse

from lms.api.dependencies import AppSettings, Reader
from lms.api.render import json_answer
from lms.api.schemas import (
    ExportParams,
    FacetsOut,
    FacetsParams,
    LogOut,
    LogsOut,
    LogsParams,
    Problem,
)
from lms.query.errors import DatabaseUnavailable
from lms.query.export import MEDIA_TYPES, open_export
from lms.query.facets import FacetsRequest, facets, parse_fields
from lms.query.filters import LogQuery

router = APIRouter()
log = structlog.get_logger(__name__)


@router.get("/logs", response_model=LogsOut, summary="Logs, newest first")
async def logs(params: Annotated[LogsParams, Query()], reader: Reader) -> Response:
    """Logs matching every given filter, newest first (by timestamp, then id).

    Page with `limit` and `cursor`: pass `next_cursor` back as `cursor` until it is
    null. Pages never repeat or skip a log, even while new ones arrive.
    """
    page = await reader.logs(LogQuery.from_input(dict(params)))
    return await json_answer(
        lambda: {"logs": [e.as_json() for e in page.logs], "next_cursor": page.next_cursor}
    )


@router.get("/logs/facets", response_model=FacetsOut, summary="Top values of the filter fields")
async def log_facets(
    params: Annotated[FacetsParams, Query()], reader: Reader, settings: AppSettings
) -> Response:
    """For the logs matching the filters of GET /v1/logs, the `limit` most frequent values
    of each of `fields` with their counts (null values not counted), for a side panel whose
    values filter by a click.

    Bounded on any table: the counts are over the newest FACETS_MAX_ROWS matching logs
    (`scanned`); when more match, `complete` is false and the counts are of those newest
    ones. service_name and severity are exact over the whole range (from the rollups)
    when the only filters are service, severity and the time range. With `q` the sample is
    what a full-text search of that size costs. 422 names an unknown field.
    """
    request = FacetsRequest(
        LogQuery.from_input(dict(params)),
        parse_fields(params.fields),
        params.limit,
        settings.facets_max_rows,
    )
    answer = await facets(reader, request)
    return await json_answer(lambda: answer)


_EXPORTED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "every matching log, newest first, streamed (chunked); a failure"
        " after the first byte aborts the connection, so a complete transfer is a complete"
        " export",
        "content": {
            MEDIA_TYPES["ndjson"]: {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@router.get(
    "/logs/export",
    response_class=StreamingResponse,
    responses=_EXPORTED,
    summary="Every matching log, as NDJSON or CSV",
)
async def export(params: Annotated[ExportParams, Query()], reader: Reader) -> Response:
    """Every log matching the filters of GET /v1/logs, newest first, with no page limit:
    streamed page by page in constant memory, for BI tools and spreadsheets.

    `ndjson`: one log a line, each the item GET /v1/logs returns. `csv`: a header line, then
    id, timestamp, service_name, severity, payload, resource_id, trace_id, span_id, commit and
    metadata (compact JSON), RFC 4180 quoting, CRLF line ends, UTF-8; null is an empty field,
    and a text starting with = + - @, tab or CR gets a leading apostrophe against formula
    injection. Errors found before the first byte (a bad filter, the database down) are the
    usual 422 and 503; one during the transfer closes the connection before the chunked
    body's end, so a client sees a truncated transfer (curl exits 18), never a short file
    that looks complete.
    """
    chunks = await open_export(reader, LogQuery.from_input(dict(params)), params.format)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk.encode("utf-8")
        except DatabaseUnavailable as exc:
            log.warning("export aborted midway", reason=exc.explained)
            raise  # uvicorn closes the connection: the client sees a truncated transfer

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    disposition = f'attachment; filename="lms-logs-{stamp}.{params.format}"'
    return StreamingResponse(
        body(),
        media_type=MEDIA_TYPES[params.format],
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
    )


# `:int` in the path, so that /logs/export and the other named paths are never taken for an id.
@router.get(
    "/logs/{log_id:int}",
    response_model=LogOut,
    responses={404: {"model": Problem, "description": "no log has this id"}},
    summary="One log, by its id",
)
async def log_by_id(
    log_id: Annotated[int, Path(ge=1, le=2**64 - 1, description="the log's `id`")],
    reader: Reader,
) -> Response:
    """The log with this `id` (the primary key GET /v1/logs gives each log): a permalink to
    one log line, which the web UI opens in its context."""
    entry = await reader.log(log_id)
    if entry is None:
        raise HTTPException(404, f"no log with id {log_id}")
    return await json_answer(entry.as_json)
