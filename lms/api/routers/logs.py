"""GET /v1/logs: the stored logs, filtered, searched and paged."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from lms.api.dependencies import Reader
from lms.api.render import json_answer
from lms.api.schemas import LogsOut, LogsParams
from lms.query.filters import LogQuery

router = APIRouter()


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
