"""What every ingestion router of `lms api` shares, whatever protocol it decodes.

- `IngestRoute`, the route class of their APIRouters: counts each answer (IngestErrors
  included, which the app's handler turns into responses) by the route's path template.
- `publish_checked`: the edge check, then the publish of the valid logs, with their metrics.
- `ingest_error`: the app's handler of IngestError, `{"detail": ...}` with its status and
  `Retry-After` in whole seconds, as HTTP wants it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from lms.domain.record import Rules
from lms.ingest.http.edge import Accepted, Candidate, Refused, check
from lms.ingest.http.errors import IngestError
from lms.ingest.http.publisher import LogPublisher
from lms.ops import api_metrics


class IngestRoute(APIRoute):
    """An ingestion route: its answers are counted in lms_api_ingest_requests."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def counted(request: Request) -> Response:
            endpoint = endpoint_of(request)
            try:
                response = await handler(request)
            except IngestError as exc:
                api_metrics.record_response(endpoint, exc.status)
                raise
            api_metrics.record_response(endpoint, response.status_code)
            return response

        return counted


def endpoint_of(request: Request) -> str:
    """The metrics' `endpoint` of the route serving `request`: its name (`native`, ...), not
    its path, which a route does not know once included under a prefix."""
    route: APIRoute = request.scope["route"]
    return route.name


async def publish_checked(
    publisher: LogPublisher,
    items: Iterable[Candidate | Refused],
    endpoint: str,
    rules: Rules,
) -> tuple[list[Accepted], list[Refused], list[str]]:
    """Check `items`, publish the valid ones and wait for Pub/Sub; (published, refused, and
    the Pub/Sub message ids of the published, in their order).

    Raises the publisher's Overloaded (429) or PublishUnavailable (503): then nothing of the
    request is promised, and the refused logs are not counted either (the client retries
    the whole request, so they would be counted again).
    """
    accepted, refused = check(items, rules)
    message_ids: list[str] = []
    if accepted:
        started = time.perf_counter()
        try:
            message_ids = await publisher.publish(accepted)
        finally:
            api_metrics.PUBLISH_DURATION.observe(time.perf_counter() - started)
        api_metrics.LOGS_ACCEPTED.labels(endpoint).inc(len(accepted))
    for item in refused:
        api_metrics.LOGS_REJECTED.labels(endpoint, item.reason).inc()
    return accepted, refused, message_ids


def retry_after(exc: IngestError) -> dict[str, str]:
    """The headers of an IngestError's answer: `Retry-After` of a 429 or 503, in whole
    seconds as HTTP wants it, and `Connection: close` when the connection must not serve
    another request (the rest of a body that came too slowly may still trickle in)."""
    headers = {"Connection": "close"} if exc.close_connection else {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return headers


async def ingest_error(_request: Request, exc: IngestError) -> Response:
    """An IngestError as its status, `{"detail": ...}` and, when set, `Retry-After`."""
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=retry_after(exc))
