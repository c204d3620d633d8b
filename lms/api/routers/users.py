"""GET /v1/users/{user_id}/requests: one user's requests, in the order they were made."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator
from starlette.responses import Response

from lms.api.dependencies import Reader
from lms.api.render import json_answer
from lms.api.schemas import RequestsOut, RequestsParams, exact
from lms.domain.record import MAX_CONTEXT
from lms.query.cursor import RequestCursor
from lms.query.user_requests import RequestsQuery

router = APIRouter()

UserId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_CONTEXT,
        description="metadata.user_id of the logs; an integer one as its digits"
        ' (42 finds 42 and "42")',
    ),
    AfterValidator(exact),
]


# `:path`, so that an id holding a slash (percent-encoded or not) is still one id.
@router.get(
    "/users/{user_id:path}/requests",
    response_model=RequestsOut,
    summary="A user's requests, in the order they were made",
)
async def user_requests(
    user_id: UserId, params: Annotated[RequestsParams, Query()], reader: Reader
) -> Response:
    """The user's request logs (those with metadata.instance and metadata.seq, as the
    lms_client middleware sends them), oldest first: by timestamp (the request's start),
    then instance, then seq, then id.

    Across instances the order is as good as their clocks; within one instance seq orders
    requests exactly. Page with `limit` and `cursor` (this listing's own next_cursor, not
    one of GET /v1/logs) until `next_cursor` is null; pages never repeat or skip a request.
    """
    cursor = RequestCursor.decode(params.cursor) if params.cursor else None
    page = await reader.user_requests(RequestsQuery(user_id, params.limit, cursor))
    return await json_answer(
        lambda: {"requests": [e.as_json() for e in page.logs], "next_cursor": page.next_cursor}
    )
