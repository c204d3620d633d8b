"""WSGIMiddleware: one LMS log per request of a WSGI app (Flask, Django), as ASGIMiddleware.

A WSGI response ends when the server closes its iterable, so the log is sent then (the
duration and the response size include a streamed body); a close before the iterable was
exhausted is a client that went away (`disconnected`). An exception from the app, or from
its iterable, is logged with its traceback and re-raised unchanged.

Route templates: WSGI has no router of its own, so the app says which route it dispatched to
in `environ["lms_client.route"]`. For Flask this is automatic: wrapping `app.wsgi_app`
connects Flask's `request_started` signal (which records `request.url_rule`) and
`got_request_exception` (Flask turns a handler's exception into its 500 answer; the signal
gives the log its traceback). For Django, a three-line middleware sets it (the README).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from lms_client.digits import digits
from lms_client.handler import LMSHandler
from lms_client.requestlog import SPENT, RequestLog, RequestLogger, Sequencer, route_template

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

ROUTE_KEY = "lms_client.route"
"""The environ key where the app puts the template of the route it dispatched to."""
EXCEPTION_KEY = "lms_client.exception"
"""The environ key where the app puts an exception it turned into a 500 answer itself."""
_SPECIAL = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}


class WSGIMiddleware:
    """Logs every request of `app` through `handler` (an LMSHandler), exactly once.

        app.wsgi_app = WSGIMiddleware(app.wsgi_app, handler=handler, user_id=fn)   # Flask
        application = WSGIMiddleware(get_wsgi_application(), handler=handler)      # Django

    `user_id(environ)` -> the user's id or None, called once the response is over (so what
    the app put in the environ is there). `log_query`, `log_headers`: see RequestLogger.
    """

    def __init__(
        self,
        app: WSGIApp,
        handler: LMSHandler,
        user_id: Callable[[Environ], object] | None = None,
        *,
        log_query: bool = False,
        log_headers: Iterable[str] = (),
        sequencer: Sequencer | None = None,
    ) -> None:
        self.app = app
        self.logger: RequestLogger[Environ] = RequestLogger(
            handler, user_id, log_query=log_query, log_headers=log_headers, sequencer=sequencer
        )
        _connect_flask(app)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        def header(name: str) -> str | None:
            key = _SPECIAL.get(name) or "HTTP_" + name.upper().replace("-", "_")
            value = environ.get(key)
            return value if isinstance(value, str) else None

        logger = self.logger
        request = logger.start(
            environ.get("REQUEST_METHOD", ""),
            environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            header("traceparent"),
            header("x-request-id"),
        )
        logger.extras(request, header, lambda: str(environ.get("QUERY_STRING", "")))
        length = header("content-length")
        request.request_size = int(length) if length is not None and digits(length) else 0
        request_id = request.request_id

        def watched_start(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Any:
            code = status[:3]
            request.status = int(code) if digits(code) else None
            if not any(name.lower() == "x-request-id" for name, _v in headers):
                headers = [*headers, ("X-Request-ID", request_id)]
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, watched_start)
        except BaseException as exc:
            request.outcome, request.error = "exception", exc
            self._finish(request, environ)
            raise
        return _Body(body, request, self, environ)

    def _finish(self, request: RequestLog, environ: Environ) -> None:
        route = environ.get(ROUTE_KEY)
        request.route = route_template(route) if isinstance(route, str) else None
        handled = environ.get(EXCEPTION_KEY)
        if isinstance(handled, BaseException) and request.error is None:
            request.outcome, request.error = "exception", handled
        self.logger.finish(request, environ)


class _Body:
    """The app's response iterable, counted as it is sent; the log goes when the server
    closes it (or when iterating it raises)."""

    def __init__(
        self, body: Iterable[bytes], request: RequestLog, owner: WSGIMiddleware, environ: Environ
    ) -> None:
        self._body = body
        self._request = request
        self._owner = owner
        self._environ = environ
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        request = self._request
        try:
            for chunk in self._body:
                request.response_size += len(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            request.outcome, request.error = "exception", exc
            self._log()
            raise
        request.ended = time.perf_counter()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if self._request.ended is None and self._request.outcome == "response":
                self._request.outcome = "disconnected"
            self._log()

    def _log(self) -> None:
        if not self._done:
            self._done = True
            self._owner._finish(self._request, self._environ)
            self._request = SPENT  # queued: nothing here changes it any more


def _connect_flask(app: object) -> None:
    """When `app` is a Flask app's `wsgi_app` (or the app), record each request's URL rule
    and handled exception in its environ through Flask's signals. Nothing when Flask is not
    installed or `app` is not Flask's."""
    flask_app = getattr(app, "__self__", app)
    if not (hasattr(flask_app, "url_map") and hasattr(flask_app, "wsgi_app")):
        return
    try:
        import flask
    except ImportError:  # pragma: no cover - an url_map without Flask
        return
    if not isinstance(flask_app, flask.Flask):
        return

    def started(_sender: object, **_extra: object) -> None:
        rule = flask.request.url_rule
        flask.request.environ[ROUTE_KEY] = rule.rule if rule is not None else None

    def failed(_sender: object, exception: BaseException, **_extra: object) -> None:
        flask.request.environ[EXCEPTION_KEY] = exception

    flask.request_started.connect(started, flask_app, weak=False)
    flask.got_request_exception.connect(failed, flask_app, weak=False)
