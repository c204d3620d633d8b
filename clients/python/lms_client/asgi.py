"""ASGIMiddleware: one LMS log per HTTP request of an ASGI app (Starlette, FastAPI).

Pure ASGI, not Starlette's BaseHTTPMiddleware: it only wraps `receive` and `send` to watch
the request go by, so streaming responses stream and background tasks run as without it.
It notes the status and the sizes, a client disconnect (`http.disconnect` before the
response was complete), an exception (logged with its traceback, then re-raised unchanged,
so the framework's own 500 handling answers) and a cancellation; once the app returns, it
reads the route template Starlette's router left in `scope["route"]` and sends the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from lms_client.digits import digits
from lms_client.handler import LMSHandler
from lms_client.requestlog import SPENT, RequestLogger, Sequencer

ASGIScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]

_REQUEST_ID = b"x-request-id"


class ASGIMiddleware:
    """Logs every HTTP request of `app` through `handler` (an LMSHandler), exactly once.

        app.add_middleware(ASGIMiddleware, handler=handler, user_id=lambda scope: ...)

    `user_id(scope)` -> the user's id or None, called after the app answered (so what an
    authentication middleware inside this one put in the scope is there). `log_query`,
    `log_headers`: see RequestLogger. Other scopes (websocket, lifespan) pass through.
    """

    def __init__(
        self,
        app: ASGIApp,
        handler: LMSHandler,
        user_id: Callable[[ASGIScope], object] | None = None,
        *,
        log_query: bool = False,
        log_headers: Iterable[str] = (),
        sequencer: Sequencer | None = None,
    ) -> None:
        self.app = app
        self.logger: RequestLogger[ASGIScope] = RequestLogger(
            handler, user_id, log_query=log_query, log_headers=log_headers, sequencer=sequencer
        )
        self._header_names = frozenset(
            name.encode("latin-1", "replace") for name in self.logger.header_names
        )
        self._extras = self.logger.log_query or bool(self.logger.log_headers)

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One pass over the headers for the few the log reads (the first of each name).
        wanted = self._header_names
        found: dict[str, str] = {}
        for k, v in scope.get("headers") or ():
            k = k.lower()
            if k in wanted:
                name = k.decode("latin-1")
                if name not in found:
                    found[name] = v.decode("latin-1")
        logger = self.logger
        request = logger.start(
            scope.get("method", ""),
            scope.get("path", ""),
            found.get("traceparent"),
            found.get("x-request-id"),
        )
        if self._extras:
            logger.extras(
                request,
                found.get,
                lambda: bytes(scope.get("query_string", b"")).decode("latin-1"),
            )
        length = found.get("content-length")
        declared = int(length) if length is not None and digits(length) else 0
        root_path = scope.get("root_path", "")
        request_id = request.request_id.encode("ascii")
        body_bytes = 0

        async def watched_receive() -> Message:
            nonlocal body_bytes
            message = await receive()
            kind = message.get("type")
            if kind == "http.request":
                body_bytes += len(message.get("body", b""))
            elif kind == "http.disconnect" and request.ended is None:
                request.outcome = "disconnected"
            return message

        async def watched_send(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.body":
                request.response_size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    await send(message)
                    request.ended = time.perf_counter()
                    return
            elif kind == "http.response.start":
                request.status = int(message["status"])
                headers = message.get("headers") or ()
                for k, _v in headers:
                    if k.lower() == _REQUEST_ID:
                        break
                else:
                    message = {**message, "headers": [*headers, (_REQUEST_ID, request_id)]}
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except asyncio.CancelledError:
            if request.ended is None:
                request.outcome = "cancelled"
            raise
        except BaseException as exc:
            if not (request.outcome == "disconnected" and isinstance(exc, OSError)):
                request.outcome = "exception"
                request.error = exc
            raise
        finally:
            request.request_size = declared if declared >= body_bytes else body_bytes
            request.route = route_of(scope, root_path)
            logger.finish(request, scope)
            # Queued: what the watchers may still be given (an app sending after it
            # returned) must not change it.
            request = SPENT


def route_of(scope: ASGIScope, root_path: str) -> str | None:
    """The template of the route Starlette's router matched (`scope["route"]`, set by it and
    by FastAPI), behind the prefix of the Mounts it went through; None when no endpoint
    matched (a 404, a Mount without a match inside): never the raw path, whose values would
    make as many routes as there are ids."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str) or not hasattr(route, "endpoint"):
        return None
    mounted = scope.get("root_path", "")
    if mounted == root_path:  # no Mount on the way
        return template
    prefix = mounted[len(root_path) :] if mounted.startswith(root_path) else ""
    return prefix + template
