"""One log per HTTP request: what ASGIMiddleware and WSGIMiddleware share.

The framework-specific halves (lms_client.asgi, lms_client.wsgi) only observe a request: its
start, its status, its sizes, how it ended. Everything else is here, so both log exactly the
same fields (the README's "Request log fields", the interface `lms api`'s analytics read):

- `Sequencer`: the instance (host:pid) and its request counter `seq`, with the request's
  start timestamp taken under the same lock and never earlier than the previous one, so that
  within one instance timestamp order never contradicts seq order, even if the clock steps
  back (GET /v1/users/{id}/requests orders by timestamp, then instance, then seq);
- `RequestLogger`: the options (user_id callable, which query and headers to log) and the
  building of the log, handed to LMSHandler.submit, which queues it without touching the
  network. Nothing here raises into the request: a failure to log is counted as a loss.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring as _str
from typing import Generic, TypeVar

from lms_client.entry import Deferred, Head, estimate
from lms_client.handler import LMSHandler
from lms_client.jsonsafe import short_repr
from lms_client.limits import (
    MAX_CONTEXT,
    MAX_JSON_INT,
    MAX_METADATA,
    MAX_PAYLOAD,
    clean_text,
    has_surrogates,
)
from lms_client.mapping import log_json, timestamp_us_text, truncate

Scope = TypeVar("Scope")
"""What the user_id callable is given: the ASGI scope or the WSGI environ."""

MAX_REQUEST_ID = 128
"""Characters of an incoming X-Request-ID kept; a longer one is replaced by a fresh id."""
_REQUEST_ID = re.compile(rf"[!-~]{{1,{MAX_REQUEST_ID}}}")
"""Printable ASCII without spaces: a header value safe to echo and to store."""
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
MIN_USER_ID, MAX_USER_ID = -(2**63), 2**64 - 1
"""An integer user id LMS indexes (lms/domain/record.py): 64 bits."""
MAX_HEADER_VALUE = 1000
"""Characters kept of a logged header's value (metadata is bounded: 16,384 characters)."""
MAX_LOGGED_PATH = 2000
"""Characters kept of metadata.http.path and metadata.http.query."""


class Sequencer:
    """This process's instance name and request counter, and the request start times.

    One per process (`PROCESS_SEQUENCER`), shared by every middleware in it, so two apps of
    one process never give two requests the same (instance, seq). `clock` (wall-clock
    seconds) is injectable for tests. A forked child (gunicorn's workers) is a new instance:
    its own pid, its counter from 0, its own `id_prefix`.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self.instance = f"{socket.gethostname()}:{os.getpid()}"[-MAX_CONTEXT:]
        self._seq = 0
        self._last_us = 0
        self.id_prefix = secrets.token_hex(8)
        """The first half of the request ids its requests get when they bring none (32 hex
        digits: this prefix, then the seq in 16): unique, not secret, and made of what the
        request has already rather than of random bits each. The prefix is 64 random bits
        from the system, so that neither two instances nor an application seeding the
        `random` module make two requests share an id."""

    def next(self) -> tuple[int, int]:
        """(start timestamp in microseconds since the epoch, seq) of a request starting now:
        the timestamp is max(now, the previous one), taken with the seq under one lock."""
        with self._lock:
            now_us = int(self._clock() * 1_000_000)
            if now_us > self._last_us:
                self._last_us = now_us
            seq = self._seq
            self._seq += 1
            return self._last_us, seq


PROCESS_SEQUENCER = Sequencer()


class RequestLog(Deferred):
    """One request's log, filled in by a middleware as the request goes, completed by
    RequestLogger.finish and then queued as it is, without a copy: it holds plain, immutable
    values only (strings, numbers, None, a tuple of header pairs), and the middleware never
    writes to it once it is queued (its watchers are pointed at a throwaway one), so nothing
    the app does after the request changes it. Encoded on the handler's sending thread
    (`encode`): the README's request log fields, with the mapping every log gets (payload
    truncation, JSON-safe values, MAX_METADATA) included."""

    __slots__ = (
        "ended",
        "error",
        "headers",
        "instance",
        "method",
        "outcome",
        "path",
        "payload",
        "query",
        "request_id",
        "request_size",
        "response_size",
        "route",
        "seq",
        "span_id",
        "started",
        "status",
        "timestamp_us",
        "trace_id",
        "user",
        "user_error",
    )

    def __init__(
        self,
        method: str,
        path: str,
        timestamp_us: int,
        seq: int,
        started: float,
        request_id: str,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> None:
        self.size = 0  # Deferred's fields, set here: one call fewer per request
        self.key: str | None = None
        self.method = method
        self.path = path
        self.timestamp_us = timestamp_us
        self.seq = seq
        self.started = started
        """time.perf_counter() at the start, for the duration."""
        self.request_id = request_id
        self.trace_id = trace_id
        self.span_id = span_id
        self.ended: float | None = None
        """time.perf_counter() when the response's last byte was handed to the server (work
        after it, a background task, is not the request's duration); the finish's time when
        there was none."""
        self.query: str | None = None
        self.headers: tuple[tuple[str, str], ...] | None = None
        self.route: str | None = None
        self.status: int | None = None
        self.request_size = 0
        self.response_size = 0
        self.outcome = "response"
        """response, exception, disconnected (the client went away) or cancelled."""
        self.error: BaseException | None = None
        """The exception, until the finish turns it into `payload` (no traceback is kept)."""
        self.instance = ""
        self.user: str | int | None = None
        """What the user_id callable returned: a value LMS indexes, or a string or an
        integer checked when the log is encoded (user_id_value; immutable, so it can wait)."""
        self.user_error: str | None = None
        self.payload: str | None = None
        """The whole payload, when an exception's traceback is in it."""

    def duration_ms(self) -> float:
        """From the start to the response's end (or the finish), in milliseconds to the
        microsecond (an integer's thousandth: a third of round()'s cost)."""
        ended = self.ended if self.ended is not None else self.started
        return int((ended - self.started) * 1e6 + 0.5) / 1000

    def first_line(self, duration_ms: float) -> str:
        """The payload's first line: `GET /users/{id} 200 1.2ms`, and how it ended when not
        with its response (` (disconnected)`)."""
        status = self.status
        line = (
            f"{self.method} {self.route or self.path}"
            f" {status if status is not None else '-'} {duration_ms:.1f}ms"
        )
        return line if self.outcome == "response" else f"{line} ({self.outcome})"

    def user_and_error(self) -> tuple[str | int | None, str | None]:
        """metadata.user_id and metadata.user_id_error: the user id when LMS takes it, else
        why not (a check the finish left to the sending thread, see `user`)."""
        if self.user is None or self.user_error is not None:
            return None, self.user_error
        try:
            return user_id_value(self.user), None
        except ValueError as exc:
            return None, short_repr(exc)

    def encode(self, head: Head) -> str:
        """The usual request, one string template; anything unusual for it (a surrogate,
        a log beyond MAX_METADATA, an integer beyond JSON's, a value of another type than the
        middlewares give) takes `encode_general`, the path of every other log, which makes
        anything acceptable."""
        try:
            return self._encode_usual(head)
        except (TypeError, ValueError, AttributeError):
            return self.encode_general(head)

    def _encode_usual(self, head: Head) -> str:
        route = self.route
        status = self.status
        outcome = self.outcome
        request_size = self.request_size
        response_size = self.response_size
        if not (request_size < MAX_JSON_INT and response_size < MAX_JSON_INT):
            return self.encode_general(head)
        duration_ms = self.duration_ms()
        method = self.method
        path = self.path
        payload = self.payload
        shape = (
            _shape(method, route, status, outcome)
            if route is not None and payload is None
            else None
        )
        if shape is not None:
            severity, payload_head, payload_tail, http_head, outcome_json = shape
            payload_json = f"{payload_head}{duration_ms:.1f}{payload_tail}"
            http = f'{http_head},"path":{_str(path)},"status_code"'
        else:
            if payload is None:
                payload = self.first_line(duration_ms)
                if len(payload) > MAX_PAYLOAD:  # surrogates: looked for in the whole text
                    payload = truncate(payload)
            severity = severity_of(status, outcome)
            payload_json = _str(payload)
            outcome_json = _str(outcome)
            http = (
                f'{{"method":{_str(method)},"route":'
                f'{_str(route) if route is not None else "null"},"path":{_str(path)}'
                f',"status_code"'
            )
        extra = ""  # http's optional members
        if self.query is not None:
            extra = ',"query":' + _str(self.query)
        if self.headers is not None:
            extra += (
                ',"headers":{' + ",".join(f"{_str(k)}:{_str(v)}" for k, v in self.headers) + "}"
            )
        user = self.user
        if type(user) is str and self.user_error is None and user.isascii() and user.isprintable():
            # what user_id_value passes at once: the usual id, checked with a few flag reads
            after = (
                f',"user_id":{_str(user)}'
                if 0 < len(user) <= MAX_CONTEXT and user[0] != " " and user[-1] != " "
                else _user_members(*self.user_and_error())
            )
        else:
            after = _user_members(*self.user_and_error())
        trace = ""
        if self.trace_id:
            trace = ',"trace_id":' + _str(self.trace_id[:MAX_CONTEXT])
        if self.span_id:
            trace += ',"span_id":' + _str(self.span_id[:MAX_CONTEXT])
        text = (
            f'{{{head.service},"severity":"{severity}","payload":{payload_json}'
            f',"timestamp":"{timestamp_us_text(self.timestamp_us)}"{trace}{head.constants}'
            f',"metadata":{{"http":{http}:{status if status is not None else "null"}'
            f',"duration_ms":{duration_ms!r},"request_size":{request_size}'
            f',"response_size":{response_size},"outcome":{outcome_json}{extra}}}'
            f',"request_id":{_str(self.request_id)},"instance":{_str(self.instance)}'
            f',"seq":{self.seq}{after}}}}}'
        )
        # The metadata is part of the text: within the limit when the whole is (the usual
        # case by far); else the general path measures it.
        if len(text) > MAX_METADATA or has_surrogates(text):
            return self.encode_general(head)
        return text

    def encode_general(self, head: Head) -> str:
        """The same log through the mapping of every other log (LMSHandler.submit's)."""
        http: dict[str, object] = {
            "method": self.method,
            "route": self.route,
            "path": self.path,
            "status_code": self.status,
            "duration_ms": self.duration_ms(),
            "request_size": self.request_size,
            "response_size": self.response_size,
            "outcome": self.outcome,
        }
        if self.query is not None:
            http["query"] = self.query
        if self.headers is not None:
            http["headers"] = dict(self.headers)
        metadata: dict[str, object] = {
            "http": http,
            "request_id": self.request_id,
            "instance": self.instance,
            "seq": self.seq,
        }
        user, user_error = self.user_and_error()
        if user_error is not None:
            metadata["user_id_error"] = user_error
        if user is not None:
            metadata["user_id"] = user
        payload = self.payload
        if payload is None:
            payload = truncate(clean_text(self.first_line(self.duration_ms())))
        fields = {
            "service_name": head.service_name,
            "severity": severity_of(self.status, self.outcome),
            "payload": payload,
            "timestamp": timestamp_us_text(self.timestamp_us),
        }
        for name, value in (("trace_id", self.trace_id), ("span_id", self.span_id)):
            if value:
                fields[name] = clean_text(value)[:MAX_CONTEXT]
        fields.update(head.constant_fields)
        return log_json(fields, metadata)


SPENT = RequestLog("", "", 0, 0, 0.0, "")
"""Where a middleware's watchers write once the request's log is queued (an app calling
`send` after it returned): never queued, never read."""


def request_id_of(header: str | None) -> str | None:
    """The client's X-Request-ID when it is 1-128 printable ASCII characters, else None (the
    request gets a fresh one): an id that is echoed in a response header and stored must be
    safe in both."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return None


def traceparent_ids(header: str | None) -> tuple[str | None, str | None]:
    """(trace id, parent span id) of a W3C `traceparent` header, or (None, None) when absent
    or invalid: version ff, all-zero ids, version 00 with anything after the flags."""
    if header is None:
        return None, None
    match = _TRACEPARENT.fullmatch(header.strip())
    if match is None:
        return None, None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None, None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None, None
    return trace_id, span_id


def user_id_value(value: object) -> str | int | None:
    """A value LMS indexes as metadata.user_id, or None: a string of 1-255 characters with no
    control character nor whitespace at an end, or a 64-bit integer. Anything else would get
    the whole log refused, so it is left out (and said so in metadata.user_id_error)."""
    if value is None:
        return None
    if (  # the usual id, at the cost of a few flag reads
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and 0 < len(value) <= MAX_CONTEXT
        and value[0] != " "
        and value[-1] != " "
    ):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if MIN_USER_ID <= value <= MAX_USER_ID:
            return value
        raise ValueError("an integer beyond 64 bits")
    if isinstance(value, str):
        text = clean_text(value)
        if not 1 <= len(text) <= MAX_CONTEXT:
            raise ValueError(f"a string of {len(text)} characters, not 1..{MAX_CONTEXT}")
        if not text.isprintable() or text != text.strip():
            raise ValueError("a string with control characters or whitespace at an end")
        return text
    raise ValueError(f"a {type(value).__name__}, not a string or an integer")


class RequestLogger(Generic[Scope]):
    """The options of a request-logging middleware and the log it sends per request.

    `handler`: the LMSHandler whose queue, batching and transport carry the logs.
    `user_id`: called once per request, after the app answered, with the ASGI scope or the
    WSGI environ as the app left it; returns the user's id or None (an exception in it is
    caught: the log goes without a user id, metadata.user_id_error says why).
    `log_query`: log the query string (metadata.http.query); off by default, as query strings
    carry tokens. `log_headers`: the request headers to log (metadata.http.headers), by name;
    none by default. `sequencer`: the process's (tests inject one with a clock).
    """

    def __init__(
        self,
        handler: LMSHandler,
        user_id: Callable[[Scope], object] | None = None,
        *,
        log_query: bool = False,
        log_headers: Iterable[str] = (),
        sequencer: Sequencer | None = None,
    ) -> None:
        if not isinstance(handler, LMSHandler):
            raise ValueError(f"handler must be an LMSHandler, not {handler!r}")
        if user_id is not None and not callable(user_id):
            raise ValueError(f"user_id must be a callable or None, not {user_id!r}")
        if isinstance(log_headers, str):
            raise ValueError("log_headers is a list of header names, not one string")
        self.handler = handler
        self.user_id = user_id
        self.log_query = bool(log_query)
        self.log_headers = tuple(name.lower() for name in log_headers)
        self.header_names = frozenset(("traceparent", "x-request-id", "content-length"))
        """The request headers a middleware reads (lowercase), the logged ones included."""
        self.header_names |= frozenset(self.log_headers)
        self.sequencer = sequencer or PROCESS_SEQUENCER
        # The size estimate's fixed part (see finish): the strings of bounded length are
        # counted at their bounds, 736 for request_id (MAX_REQUEST_ID), the instance and a
        # user id (MAX_CONTEXT each; a user id's error, when it has one, is shorter), the
        # trace context (48) and their names.
        self._base_size = estimate(736, handler.head)

    def start(
        self, method: str, path: str, traceparent: str | None, given_id: str | None
    ) -> RequestLog:
        """A request starting now, with its `traceparent` and `X-Request-ID` headers (None
        when absent). The query string and the logged headers are the middleware's to add
        (`extras`), only when asked for: this runs per request."""
        sequencer = self.sequencer
        timestamp_us, seq = sequencer.next()
        request_id = request_id_of(given_id) if given_id is not None else None
        if request_id is None:
            request_id = f"{sequencer.id_prefix}{seq:016x}"
        trace_id, span_id = traceparent_ids(traceparent) if traceparent else (None, None)
        return RequestLog(
            method,
            path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH],
            timestamp_us,
            seq,
            time.perf_counter(),
            request_id,
            trace_id,
            span_id,
        )

    def extras(
        self, request: RequestLog, header: Callable[[str], str | None], query: Callable[[], str]
    ) -> None:
        """The query string and the logged headers (`header(name)` reads one, lowercase
        name), when the options ask for them."""
        if self.log_query:
            request.query = query()[:MAX_LOGGED_PATH]
        if self.log_headers:
            request.headers = tuple(
                (name, value[:MAX_HEADER_VALUE])
                for name in self.log_headers
                if (value := header(name)) is not None
            )

    def finish(self, request: RequestLog, scope: Scope) -> None:
        """Queue the request's one log. Never raises: a failure here is counted as a loss of
        the handler (dropped, `rejected`), the request itself is not touched.

        Only what cannot wait happens here, in the request's thread or event loop: the user
        id (the scope is the app's and may change), the traceback, the final figures; the
        log's mapping and JSON encoding run on the handler's thread."""
        try:
            if request.ended is None:
                request.ended = time.perf_counter()
            if request.status is None and request.outcome == "exception":
                request.status = 500  # what the framework's own error handling answers
            if self.user_id is not None:
                try:
                    user = self.user_id(scope)
                    # A string within bounds or an integer is immutable: checked on the sending
                    # thread. Anything else now, while it is what the app left.
                    kind = type(user)
                    if not (
                        (kind is str and len(user) <= MAX_CONTEXT) or kind is int or user is None  # type: ignore[arg-type]
                    ):
                        user = user_id_value(user)
                    request.user = user  # type: ignore[assignment]
                except Exception as exc:
                    request.user_error = short_repr(exc)
            request.instance = self.sequencer.instance
            # The strings of unbounded length counted, beyond the fixed part (_base_size).
            size = self._base_size + len(request.method) + len(request.path)
            if request.error is not None:
                # The whole payload now, cut to the limit: the log keeps no traceback object and
                # no more text than is sent.
                request.payload = truncate(
                    clean_text(
                        request.first_line(request.duration_ms())
                        + "\n"
                        + "".join(traceback.format_exception(request.error)).rstrip()
                    )
                )
                request.error = None
                size += len(request.payload)
            if request.route is not None:
                size += len(request.route)
            if request.query is not None:
                size += len(request.query)
            if request.headers:
                size += sum(len(k) + len(v) + 6 for k, v in request.headers)
            if request.user_error is not None:
                size += len(request.user_error)
            request.size = size
        except Exception as exc:  # pragma: no cover - this is total over what it is given
            # Still one log for the request, saying what went wrong.
            self.handler.submit("error", f"request log: {exc!r}")
            return
        self.handler.enqueue(request)


def _user_members(user: str | int | None, error: str | None) -> str:
    """metadata's user_id_error and user_id members, as JSON (each only when there is one)."""
    text = ',"user_id_error":' + _str(error) if error is not None else ""
    if user is not None:
        text += ',"user_id":' + (_str(user) if type(user) is str else str(user))
    return text


Shape = tuple[str, str, str, str, str]
_SHAPES: dict[tuple[str, str, int | None, str], Shape] = {}
MAX_SHAPES = 4096
"""Shapes kept (`_shape`): a route template is one of the app's routes, so this many is
beyond any app's (methods x routes x statuses x outcomes); past it, shapes are not kept."""


def _shape(method: str, route: str, status: int | None, outcome: str) -> Shape | None:
    """What requests of one route, method, status and outcome share in their JSON, made once
    on the sending thread: the severity, the payload's quoted head and tail around its
    duration, metadata.http's first members and its outcome; None when its payload could be
    beyond MAX_PAYLOAD (the general path cuts it). Any thread: a dict's get and set are
    atomic."""
    key = (method, route, status, outcome)
    shape = _SHAPES.get(key)
    if shape is not None:
        return shape
    head = f"{method} {route} {status if status is not None else '-'} "
    if len(head) > MAX_PAYLOAD - 64:
        return None
    tail = "ms" if outcome == "response" else f"ms ({outcome})"
    shape = (
        severity_of(status, outcome),
        _str(head)[:-1],  # the opening quote and the escaped head; the duration follows
        _str(tail)[1:],  # and then the escaped tail with the closing quote
        f'{{"method":{_str(method)},"route":{_str(route)}',
        _str(outcome),
    )
    if len(_SHAPES) < MAX_SHAPES:
        _SHAPES[key] = shape
    return shape


_ROUTE_PARAMETER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")


def route_template(rule: str) -> str:
    """A Flask or Django route (`/users/<int:id>`) in the one form the analytics group by,
    Starlette's (`/users/{id}`)."""
    return _ROUTE_PARAMETER.sub(r"{\1}", rule) if "<" in rule else rule


def severity_of(status: int | None, outcome: str) -> str:
    """error: an exception or a 5xx; warn: a 4xx, or a request that ended without its
    response (the client went away, the server cancelled it); info otherwise."""
    if outcome == "exception" or (status is not None and status >= 500):
        return "error"
    if outcome != "response" or (status is not None and status >= 400):
        return "warn"
    return "info"
