"""The caching of the analytics answers over a time range (volume, errors, requests).

Closed ranges can be cached: an answer carries an ETag (a digest of its bytes), and a
request with a matching If-None-Match gets 304 with no body. A range that ends in the past
is `Cache-Control: private, max-age=CLOSED_MAX_AGE`: logs with old timestamps still arrive
late (a backlog, a shipper's retry), so even a closed range may change, but rarely, and
its ETag then changes too; a range that reaches now or later is `no-cache` (revalidate
every time). `Server-Timing` gives the time the figures took.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from fastapi import Request
from starlette.responses import Response

from lms.api.render import encode

CLOSED_MAX_AGE = 300
"""Seconds a client may reuse the answer of a range that ended before the request."""

CACHING: dict[int | str, dict[str, Any]] = {
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
"""The OpenAPI `responses` of such an endpoint."""


async def cached_answer(
    figures: Awaitable[dict[str, Any]], until: datetime | None, now: datetime, request: Request
) -> Response:
    """The JSON of `figures` (awaited here, and timed), with ETag and Cache-Control for a
    range ending at `until` (None: now), or 304 when If-None-Match has its ETag."""
    began = time.perf_counter()
    answer = await figures
    took = (time.perf_counter() - began) * 1000
    body = await asyncio.to_thread(encode, answer)
    etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    closed = until is not None and until <= now
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
