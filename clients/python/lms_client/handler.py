"""LMSHandler: a `logging.Handler` that sends records to LMS without ever blocking on it.

`emit` (in the application's thread) maps the record (lms_client.mapping) and puts it on a
bounded buffer: captured as plain values when its `extra=` is (a Deferred, see
lms_client.entry), else encoded at once; one background thread encodes what is not yet, each
log with a fresh idempotency key, and sends the buffer's batches through the transport
(lms_client.delivery). Nothing a record holds, nor any
delivery failure, raises into the application: losses are counted (`counters`) and reported
(`on_error`, by default one line on stderr).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import itertools
import logging
import math
import os
import re
import secrets
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Literal

from lms_client import counters
from lms_client.buffer import Buffer
from lms_client.counters import Counters, Problem, Tally, stderr_reporter
from lms_client.delivery import Delivery, RetryPolicy, Timer
from lms_client.entry import Deferred, Entry, Head, estimate
from lms_client.limits import MAX_CONTEXT, MAX_KEY, MAX_SERVICE_NAME, check_text, clean_text
from lms_client.mapping import (
    extras_of,
    log_json,
    plain_copy,
    severity_of,
    timestamp_of,
    trace_context,
    truncate,
    unformattable,
)
from lms_client.spool import Spool
from lms_client.transport import Transport

MAX_BATCH = 10_000
"""Logs of one batch at most: `lms api`'s default INGEST_MAX_LOGS."""
_KEY = re.compile(rf"[!#-\[\]-~]{{1,{MAX_KEY}}}")
"""A caller's key for `submit`: printable ASCII without quote or backslash (JSON as is)."""
_SEVERITIES = {name: name for name in ("debug", "info", "warn", "error", "fatal")} | {
    "warning": "warn",
    "critical": "fatal",
}


class LMSHandler(logging.Handler):
    """Sends log records to LMS as `service_name`, through `transport` (PubSubTransport or
    HTTPTransport).

    Batching: a batch goes when it holds `batch_size` logs or `batch_bytes` bytes, or
    `flush_interval` seconds after its first log came. The queue holds at most `queue_size`
    logs and `queue_bytes` bytes; when full, `on_full="drop"` drops the record (counted),
    `"block"` makes emit wait up to `block_timeout` seconds for room first. A batch that fails
    is retried for `retry_for` seconds (Retry-After honoured), then written to `spool_dir`
    (at most `spool_max_bytes`) and resent from there, also by the next process using that
    directory; without a spool its logs are dropped (counted). `close()` (and the `atexit`
    hook) drains for up to `close_timeout` seconds, then spools what is left. `on_error` gets
    each Problem (default: a line on stderr). `resource_id` and `commit` go into every log.
    """

    def __init__(
        self,
        service_name: str,
        transport: Transport,
        *,
        level: int | str = logging.NOTSET,
        batch_size: int = 1000,
        batch_bytes: int = 4 << 20,
        flush_interval: float = 1.0,
        queue_size: int = 10_000,
        queue_bytes: int = 32 << 20,
        on_full: Literal["drop", "block"] = "drop",
        block_timeout: float = 1.0,
        retry_for: float = 10.0,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 100 << 20,
        close_timeout: float = 5.0,
        on_error: Callable[[Problem], None] | None = None,
        resource_id: str | None = None,
        commit: str | None = None,
        timer: Timer | None = None,
    ) -> None:
        self.service_name = check_text("service_name", service_name, MAX_SERVICE_NAME)
        if not isinstance(transport, Transport):
            raise ValueError(f"transport must have send() and close(), not {transport!r}")
        _positive(
            batch_size=batch_size,
            batch_bytes=batch_bytes,
            flush_interval=flush_interval,
            queue_size=queue_size,
            queue_bytes=queue_bytes,
            retry_for=retry_for,
            spool_max_bytes=spool_max_bytes,
            close_timeout=close_timeout,
        )
        if batch_size > MAX_BATCH:
            raise ValueError(f"batch_size is at most {MAX_BATCH} (lms api's INGEST_MAX_LOGS)")
        if on_full not in ("drop", "block"):
            raise ValueError(f'on_full must be "drop" or "block", not {on_full!r}')
        if on_full == "block":
            _positive(block_timeout=block_timeout)
        super().__init__(level)
        self.transport = transport
        self._constants: dict[str, str] = {}
        for name, value in (("resource_id", resource_id), ("commit", commit)):
            if value is not None:
                self._constants[name] = check_text(name, value, MAX_CONTEXT)
        self.head = Head.of(self.service_name, self._constants)
        """The constant part of every log, for Deferred logs' encoding."""
        self._block_timeout = block_timeout if on_full == "block" else 0.0
        self._close_timeout = close_timeout
        self._sizes = (queue_size, queue_bytes, batch_size, batch_bytes)
        self._flush_interval = flush_interval
        self._policy = RetryPolicy(retry_for=retry_for)
        self._spool = Spool(spool_dir, spool_max_bytes) if spool_dir is not None else None
        self._report = on_error or stderr_reporter(self.service_name)
        self._timer = timer or Timer()
        self._tally = Tally()
        self._closed = False
        self._close_lock = threading.Lock()
        self._start()
        atexit.register(self._close_at_exit)
        _after_fork_restart(self)

    def _start(self) -> None:
        """A fresh buffer, keys and sending thread (at construction, and in a forked child,
        which has none of the parent's threads and must not reuse its keys)."""
        self._key_prefix = secrets.token_hex(12) + "-"
        self._key_seq = itertools.count()
        self._buffer = Buffer(*self._sizes)
        self._delivery = Delivery(
            self.transport,
            self._buffer,
            self._spool,
            self._tally,
            self._report,
            self._flush_interval,
            self._policy,
            self._timer,
            self._encode_deferred,
        )
        self._thread = threading.Thread(
            target=self._delivery.run, name=f"lms-client-{self.service_name}", daemon=True
        )
        self._thread.start()

    # --- logging.Handler ------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record; never blocks on the network, never raises."""
        if threading.current_thread() is self._thread:
            # The transport's own logging (urllib, grpc) on the sending thread: sending it
            # would log again, without end. Other handlers still see it.
            return
        try:
            entry = self._record_entry(record)
        except Exception as exc:  # pragma: no cover - the mapping catches what it can meet
            self._tally.drop(counters.REJECTED, 1)
            self._report_safely(Problem(counters.REJECTED, 1, f"cannot map a record: {exc!r}"))
            return
        self._put(entry)

    def flush(self) -> None:
        """Send what is queued now and wait (up to `close_timeout`) until it is dealt with;
        `drain` says whether it all was."""
        self.drain()

    def drain(self, timeout: float | None = None) -> bool:
        """Send what is queued now, waiting up to `timeout` seconds (default `close_timeout`)
        for every log emitted so far to be delivered, refused, spooled or dropped; True if
        all were."""
        if self._closed:
            return True
        self._buffer.hurry(True)
        try:
            return self._buffer.wait_done(self._close_timeout if timeout is None else timeout)
        finally:
            self._buffer.hurry(False)

    def close(self, timeout: float | None = None) -> None:
        """Drain the queue for up to `timeout` seconds (default `close_timeout`), then stop;
        what could not be sent by then is spooled (or counted as dropped). Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._close_at_exit)
        seconds = self._close_timeout if timeout is None else max(0.0, timeout)
        self._delivery.close(self._timer.now() + seconds)
        self._thread.join(seconds + 0.05)
        if self._thread.is_alive():
            self._delivery.abandon()
        else:
            # Emits racing with the close, after the thread's last look at the buffer.
            self._delivery.keep_unsent(self._buffer.take_all())
            try:
                self.transport.close()
            except Exception as exc:
                self._report_safely(Problem("close", 0, f"closing the transport: {exc!r}"))
        super().close()

    def _close_at_exit(self) -> None:
        self.close()

    # --- beyond logging -------------------------------------------------------------------

    @property
    def counters(self) -> Counters:
        """Sent, retried, spooled and dropped logs so far (dropped by reason), and queued."""
        return self._tally.snapshot(len(self._buffer))

    def submit(
        self,
        severity: str | int,
        payload: str,
        timestamp: float | datetime.datetime | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        trace_id: str | None = None,
        span_id: str | None = None,
        key: str | None = None,
    ) -> bool:
        """Queue a log built by the caller rather than a LogRecord (a request-logging
        middleware's, say), with the handler's queue, batching, retries and spool.

        `severity`: an LMS severity or a logging level; `timestamp`: epoch seconds or an
        aware datetime (default now); `payload` is cut to the limit and `metadata` made
        JSON-safe as for records; `key`: the log's idempotency key (1-128 printable ASCII
        characters without `"` or `\\`; default a fresh one). Returns whether it was queued.
        Never raises.
        """
        try:
            if isinstance(severity, int):
                level = severity_of(severity)
            elif severity.lower() in _SEVERITIES:
                level = _SEVERITIES[severity.lower()]
            else:
                raise ValueError(f"severity {severity!r} is not an LMS severity or a level")
            if isinstance(timestamp, datetime.datetime):
                moment = timestamp.timestamp()
            else:
                moment = timestamp if timestamp is not None else self._wall_clock()
            fields: dict[str, str] = {
                "service_name": self.service_name,
                "severity": level,
                "payload": truncate(clean_text(str(payload))),
                "timestamp": timestamp_of(moment),
            }
            for name, value in (("trace_id", trace_id), ("span_id", span_id)):
                if value:
                    fields[name] = clean_text(str(value))[:MAX_CONTEXT]
            if key is not None and not _KEY.fullmatch(key):
                raise ValueError(f"key must be 1 to {MAX_KEY} printable ASCII characters")
            entry = self._capture(fields, metadata or {}, key)
        except Exception as exc:
            self._tally.drop(counters.REJECTED, 1)
            self._report_safely(Problem(counters.REJECTED, 1, f"submit: {exc}"))
            return False
        return self._put(entry)

    def enqueue(self, log: Entry | Deferred) -> bool:
        """Queue a log captured as a Deferred (lms_client's request-logging middleware does),
        to be encoded on the sending thread; returns whether it was queued. Never raises.
        Emit and submit queue their logs through it too (`_put`)."""
        if self._closed:
            self._tally.drop(counters.CLOSED, 1)
            return False
        if self._buffer.put(log, self._block_timeout):
            return True
        self._tally.drop(counters.QUEUE_FULL, 1)  # reported by the sending thread
        return False

    # --- inside ---------------------------------------------------------------------------

    def _record_entry(self, record: logging.LogRecord) -> Entry | Deferred:
        try:
            text = self.format(record)
        except Exception as exc:
            text = unformattable(record, exc)
        fields = {
            "service_name": self.service_name,
            "severity": severity_of(record.levelno),
            "payload": truncate(clean_text(text)),
            "timestamp": timestamp_of(record.created),
        }
        context = trace_context()
        if context is not None:
            fields["trace_id"], fields["span_id"] = context
        return self._capture(fields, {"logger": record.name, **extras_of(record)})

    def _capture(
        self, fields: dict[str, str], metadata: Mapping[str, object], key: str | None = None
    ) -> Entry | Deferred:
        """The log to queue: captured (a Deferred, encoded on the sending thread) when its
        metadata is of plain values, which are copied; otherwise converted and encoded now,
        while the application's objects are as they were at the call."""
        plain = plain_copy(metadata)
        if plain is None:
            return self._encode(fields, metadata, key)
        copy, chars = plain
        chars += sum(len(value) for value in fields.values())
        return _Captured(estimate(chars, self.head), key, fields, copy)

    def _encode(
        self, fields: dict[str, str], metadata: Mapping[str, object], key: str | None = None
    ) -> Entry:
        fields.update(self._constants)
        text = log_json(fields, metadata)
        if key is None:
            key = f"{self._key_prefix}{next(self._key_seq):x}"
        return Entry(key, text.encode("utf-8"))

    def _encode_deferred(self, log: Deferred) -> Entry:
        """On the sending thread: a queued Deferred as the Entry it sends, with its key."""
        key = log.key if log.key is not None else f"{self._key_prefix}{next(self._key_seq):x}"
        return Entry(key, log.encode(self.head).encode("utf-8"))

    _put = enqueue
    """The one way into the queue (a name of its own for emit and submit, which tests
    intercept); the middleware calls `enqueue` itself, a call fewer per request."""

    def _report_safely(self, problem: Problem) -> None:
        with contextlib.suppress(Exception):  # the callback's failure is not the application's
            self._report(problem)

    @staticmethod
    def _wall_clock() -> float:
        return datetime.datetime.now(datetime.UTC).timestamp()

    def __repr__(self) -> str:
        return f"<LMSHandler {self.service_name} via {self.transport!r}>"


class _Captured(Deferred):
    """A record's or a submit's log, captured: its fields (the strings emit or submit made)
    and a plain copy of its metadata (mapping.plain_copy); LMSHandler's constants are added
    when it is encoded."""

    __slots__ = ("fields", "metadata")

    def __init__(
        self, size: int, key: str | None, fields: dict[str, str], metadata: dict[str, object]
    ) -> None:
        super().__init__(size, key)
        self.fields = fields
        self.metadata = metadata

    def encode(self, head: Head) -> str:
        fields = {**self.fields, **head.constant_fields} if head.constant_fields else self.fields
        return log_json(fields, self.metadata)


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, not {value!r}")


def _after_fork_restart(handler: LMSHandler) -> None:
    """In a forked child (gunicorn, multiprocessing), restart the handler's thread with new
    keys; weakly, so the hook keeps no handler alive."""
    ref = weakref.ref(handler)

    def restart() -> None:
        alive = ref()
        if alive is not None and not alive._closed:
            alive._tally = Tally()  # the child's own counts
            alive._start()

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=restart)
