"""GET /v1/analytics/volume and /v1/analytics/errors: counts over time by the logs' own
timestamp (lms.query.volume), unlike /v1/severity, which buckets by batch commit time.

Closed ranges can be cached: an answer carries an ETag (a digest of its bytes), and a
request with a matching If-None-Match gets 304 with no body. A range that ends in the past
is `Cache-Control: private, max-age=CLOSED_MAX_AGE`: logs with old timestamps still arrive
late (a backlog, a shipper's retry), so even a closed range may change, but rarely, and
its ETag then changes too; a range that reaches now or later is `no-cache` (revalidate
every time).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from lms.api.dependencies import AppSettings, Reader
from lms.api.render import encode
from lms.api.schemas import AnalyticsParams, ErrorsOut, ErrorsParams, VolumeOut
from lms.query.filters import LogQuery
from lms.query.reader import LogReader
from lms.query.volume import DEFAULT_TOP, SeriesRequest, error_rates, volume

router = APIRouter()

CLOSED_MAX_AGE = 300
"""Seconds a client may reuse the answer of a range that ended before the request."""

Series = Callable[[LogReader, SeriesRequest, int, datetime], Awaitable[dict[str, Any]]]

_CACHING: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "ETag": {"description": "digest of the body"},
            "Cache-Control": {},
            "Server-Timing": {
                "description": "db;dur=<ms>: what counting took, every count exact (with `q`"
                " too: a full-text count, never an estimate)"
            },
        }
    },
    304: {"description": "If-None-Match matched the ETag: the answer is unchanged"},
}


@router.get("/volume", response_model=VolumeOut, responses=_CACHING, summary="Log volume over time")
async def volume_series(
    params: Annotated[AnalyticsParams, Query()],
    request: Request,
    reader: Reader,
    settings: AppSettings,
) -> Response:
    """Logs per time bucket and severity, by the log's own `timestamp`, for any filter of
    GET /v1/logs. Every bucket of [from, to) is present (zeros included), at most
    API_MAX_BUCKETS of them (else 422, too_many_buckets). Exact: each count is COUNT(*) of
    service_logs with the same filters. `q` is exact too, at the cost of a full-text search
    (the `Server-Timing` header gives the database time)."""
    return await _answer(volume, params, request, reader, settings.api_max_buckets)


@router.get("/errors", response_model=ErrorsOut, responses=_CACHING, summary="Error rate over time")
async def error_series(
    params: Annotated[ErrorsParams, Query()],
    request: Request,
    reader: Reader,
    settings: AppSettings,
) -> Response:
    """Services ranked by errors (error + fatal) in the range, with their logs and error
    ratio; the `top` ones also per time bucket, the rest summed in `other`. The same
    filters, buckets and caching as /v1/analytics/volume; at most API_MAX_BUCKETS
    (service, bucket) pairs (else 422 naming `top`)."""
    return await _answer(error_rates, params, request, reader, settings.api_max_buckets)


async def _answer(
    series: Series, params: AnalyticsParams, request: Request, reader: LogReader, cap: int
) -> Response:
    now = datetime.now(UTC).replace(tzinfo=None)
    values = dict(params)
    ask = SeriesRequest(
        LogQuery.from_input(values),
        params.bucket,
        params.tz,
        params.compare == "previous",
        values.get("top", DEFAULT_TOP),
    )
    began = time.perf_counter()
    answer = await series(reader, ask, cap, now)
    took = (time.perf_counter() - began) * 1000
    body = await asyncio.to_thread(encode, answer)
    etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    closed = params.until is not None and params.until <= now
    headers = {
        "ETag": etag,
        "Cache-Control": f"private, max-age={CLOSED_MAX_AGE}" if closed else "no-cache",
        "Server-Timing": f"db;dur={took:.1f}",
    }
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _matches(header: str | None, etag: str) -> bool:
    """If-None-Match: `*` or a list of tags, weak ones (W/) compared by their value."""
    if header is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags
