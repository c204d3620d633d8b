"""Logs captured in the application's thread and encoded on the sending thread (Deferred):
the request log's one-template encoding against the general mapping, checked with the
server's own rules; the queue's byte bound with their size estimates; nothing the
application changes after logging reaches the log; a log that cannot be encoded is counted,
not raised; what is left at close is spooled encoded."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from client_support import Collector, Gate, Scripted, entries_fields, make_handler, retryable
from lms.domain.record import LogRecord, parse_message
from lms_client import ASGIMiddleware, LMSHandler
from lms_client.entry import Deferred, Head, estimate
from lms_client.limits import MAX_METADATA
from lms_client.mapping import TRUNCATED_KEYS
from lms_client.requestlog import RequestLog
from lms_client.spool import Spool, read

HEAD = Head.of("checkout", {"resource_id": "eu-1", "commit": "abc123"})


def request_log(size: int = 100, **changes: Any) -> RequestLog:
    """A RequestLog as RequestLogger.finish queues it, a usual request's unless changed
    (`duration_ms` sets its start and end)."""
    fields: dict[str, Any] = {
        "timestamp_us": 1_760_000_000_123_456,
        "seq": 7,
        "instance": "web-1:4242",
        "method": "GET",
        "route": "/users/{id}",
        "path": "/users/42",
        "status": 200,
        "duration_ms": 1.234,
        "request_size": 0,
        "response_size": 17,
        "outcome": "response",
        "query": None,
        "headers": None,
        "request_id": "0123456789abcdef0123456789abcdef",
        "user": "alice",
        "user_error": None,
        "trace_id": None,
        "span_id": None,
        "payload": None,
    }
    assert set(changes) <= set(fields)
    fields.update(changes)
    log = RequestLog(
        fields.pop("method"),
        fields.pop("path"),
        fields.pop("timestamp_us"),
        fields.pop("seq"),
        10.0,
        fields.pop("request_id"),
    )
    log.ended = 10.0 + fields.pop("duration_ms") / 1000
    for name, value in fields.items():
        setattr(log, name, value)
    log.size = size
    return log


def accepted(text: str) -> dict[str, Any]:
    parsed = parse_message(text.encode())
    assert isinstance(parsed, LogRecord), parsed
    fields: dict[str, Any] = json.loads(text)
    return fields


USUAL = [
    pytest.param({}, id="usual"),
    pytest.param(
        {"route": None, "status": None, "outcome": "disconnected", "user": 2**63},
        id="no-route-no-status-integer-user",
    ),
    pytest.param(
        {
            "status": 503,
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
        },
        id="5xx-traceparent",
    ),
    pytest.param(
        {
            "path": '/caf\u00e9/"q"\\x/\u2603/\x01',
            "query": 'a="1"&b=\\&c=\u00e9\n',
            "headers": (("user-agent", 'wrk "4" \\ \u00e9'), ("x-empty", "")),
            "request_id": 'a"b\\c',
        },
        id="escapes-unicode-control",
    ),
    pytest.param(
        {"user": None, "user_error": "ValueError('no user')", "headers": ()},
        id="user-error-no-headers",
    ),
    pytest.param({"status": None, "outcome": "cancelled"}, id="cancelled-route-no-status"),
    pytest.param({"status": 404, "route": '/a"b\\c/{id}'}, id="4xx-route-with-escapes"),
    pytest.param({"route": "/" + "r" * 2100}, id="route-beyond-the-payload-limit"),
    pytest.param({"user": " alice"}, id="user-checked-on-the-sending-thread-refused"),
    pytest.param({"user": "é" * 3}, id="user-not-ascii"),
    pytest.param({"user": "u" * 300}, id="user-too-long"),
    pytest.param(
        {
            "status": 500,
            "outcome": "exception",
            "payload": 'GET /x 500 1.2ms (exception)\nTraceback...\nRuntimeError: "boom"',
        },
        id="exception",
    ),
]


@pytest.mark.parametrize("changes", USUAL)
def test_the_request_template_encodes_as_the_general_mapping(changes: dict[str, Any]) -> None:
    log = request_log(**changes)
    text = log.encode(HEAD)
    assert accepted(text) == accepted(log.encode_general(HEAD))
    fields = accepted(text)
    assert fields["service_name"] == "checkout"
    assert fields["resource_id"] == "eu-1" and fields["commit"] == "abc123"
    assert fields["timestamp"] == "2025-10-09T08:53:20.123456Z"
    assert fields["metadata"]["seq"] == 7


@pytest.mark.parametrize(
    ("user", "stored"),
    [("alice", "alice"), (42, 42), (2**64, None), (" alice", None), ("a\tb", None), ("", None)],
)
def test_a_user_id_left_to_the_sending_thread_is_checked_there(user: Any, stored: Any) -> None:
    """The finish keeps a short string or an integer as it is; the encoding checks it as
    the finish checks any other value: what LMS would refuse is left out, and said why."""
    meta = accepted(request_log(user=user).encode(HEAD))["metadata"]
    if stored is None:
        assert "user_id" not in meta and meta["user_id_error"].startswith("ValueError")
    else:
        assert meta["user_id"] == stored and "user_id_error" not in meta


def test_the_request_template_without_constants() -> None:
    log = request_log()
    head = Head.of("svc", {})
    assert accepted(log.encode(head)) == accepted(log.encode_general(head))
    assert "resource_id" not in accepted(log.encode(head))


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"path": "/bad-\ud800-surrogate"}, id="surrogate"),
        pytest.param({"request_size": 10**301}, id="integer-beyond-json"),
        pytest.param(
            {"headers": tuple((f"x-h{n}", "v" * 1000) for n in range(20))}, id="metadata-too-long"
        ),
        pytest.param({"method": b"GET"}, id="not-a-string"),
    ],
)
def test_what_the_template_cannot_take_goes_the_general_way(changes: dict[str, Any]) -> None:
    log = request_log(**changes)
    text = log.encode(HEAD)
    assert text == log.encode_general(HEAD)
    fields = accepted(text)
    assert len(json.dumps(fields["metadata"], ensure_ascii=False, separators=(",", ":"))) <= (
        MAX_METADATA
    )
    if "headers" in changes:
        assert TRUNCATED_KEYS in fields["metadata"]


# --- through the middleware --------------------------------------------------------------


def _app(handler: LMSHandler) -> Any:
    async def item(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{n}", item)])
    return ASGIMiddleware(app, handler=handler, user_id=lambda _scope: "alice")


def _keep_queued(handler: LMSHandler, method: str = "enqueue") -> list[Any]:
    """The logs the handler's `method` is given (`enqueue`: the middleware's Deferred logs;
    `_put`: every log, emitted or submitted), as it is given them."""
    kept: list[Any] = []
    given = getattr(handler, method)

    def keep(log: Any) -> bool:
        kept.append(log)
        return bool(given(log))

    setattr(handler, method, keep)
    return kept


def _logger_to(handler: LMSHandler) -> logging.Logger:
    """A logger that sends INFO and above to `handler` only."""
    logger = logging.getLogger("lms-client-deferred")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


async def _requests(handler: LMSHandler, count: int, **headers: str) -> None:
    transport = httpx.ASGITransport(app=_app(handler))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for n in range(count):
            assert (await client.get(f"/items/{n % 10}", headers=headers)).status_code == 200


async def test_a_request_logs_estimate_is_at_least_its_encoded_size() -> None:
    collector = Collector()
    handler = make_handler(collector)
    kept = _keep_queued(handler)
    await _requests(handler, 5, traceparent=f"00-{'a' * 32}-{'b' * 16}-01")
    assert handler.drain(30)
    assert len(kept) == len(collector.entries) == 5
    for log, entry in zip(kept, collector.entries, strict=True):
        assert log.size >= len(entry.data)
        assert log.size == estimate(3 + len("/items/0") + len("/items/{n}") + 736, handler.head)
    handler.close()


async def test_the_queues_byte_bound_holds_for_deferred_logs() -> None:
    gate = Gate()
    handler = make_handler(gate, batch_size=1, queue_bytes=10_000, on_error=lambda _p: None)
    kept = _keep_queued(handler)
    await _requests(handler, 1)
    assert gate.entered.wait(30)  # the first is in flight; the queue is empty
    await _requests(handler, 40)
    size = kept[-1].size
    room = 10_000 // size
    assert 1 < room < 40
    assert handler.counters.queued == room
    assert handler.counters.dropped_by == {"queue_full": 40 - room}
    assert handler._buffer.bytes == room * size <= 10_000
    gate.opened.set()
    assert handler.drain(30)
    assert handler.counters.sent == 1 + room
    handler.close()


# --- snapshots -----------------------------------------------------------------------------


def test_what_is_changed_after_logging_is_not_in_the_log() -> None:
    """Metadata (a dict in it too) changed after the call is sent as it was at the call, even
    while the log waits in the queue: plain values are copied and encoded on the sending
    thread (Deferred), others converted at once (Entry)."""
    gate = Gate()
    handler = make_handler(gate, batch_size=1)
    queued = _keep_queued(handler, "_put")
    logger = _logger_to(handler)
    logger.info("in flight")
    assert gate.entered.wait(30)  # what follows stays queued until the gate opens
    meta: dict[str, Any] = {"http": {"status_code": 404}, "n": 1}
    handler.submit("warn", "submitted", None, meta)
    inner = {"order": 1}
    logger.info("emitted", extra={"detail": inner})
    tags = ["x"]
    logger.info("converted", extra={"tags": tags, "detail": inner})
    meta["http"]["status_code"] = 200
    meta["late"] = True
    inner["order"] = 2
    tags.append("y")
    assert [type(log).__name__ for log in queued] == [
        "_Captured",
        "_Captured",
        "_Captured",
        "Entry",
    ]
    gate.opened.set()
    assert handler.drain(30)
    _first, submitted, emitted, converted = entries_fields(gate.entries)
    assert submitted["metadata"] == {"http": {"status_code": 404}, "n": 1}
    assert emitted["metadata"]["detail"] == {"order": 1}
    assert converted["metadata"]["tags"] == ["x"]
    assert converted["metadata"]["detail"] == {"order": 1}
    handler.close()


def test_a_captured_logs_estimate_is_at_least_its_encoded_size() -> None:
    collector = Collector()
    handler = make_handler(collector, resource_id="eu-1", commit="abc")
    queued = _keep_queued(handler, "_put")
    logger = _logger_to(handler)
    logger.info("order %s paid", 7, extra={"order": 7, "amount": -1.2345678901234567e-308})
    logger.info("x" * 5000, extra={"big": "y" * 3000, "http": {"a": None, "b": True, "c": 2**60}})
    handler.submit("info", "plain", None, {})
    assert handler.drain(30)
    assert len(queued) == len(collector.entries) == 3
    for log, entry in zip(queued, collector.entries, strict=True):
        assert isinstance(log, Deferred)
        assert log.size >= len(entry.line())
    handler.close()


class _Broken(Deferred):
    def encode(self, head: Head) -> str:
        raise RuntimeError("a bug")


def test_a_log_that_cannot_be_encoded_is_counted_and_reported_not_raised() -> None:
    collector = Collector()
    seen: list[Any] = []
    handler = make_handler(collector, on_error=seen.append)
    assert handler.enqueue(request_log(500, seq=1))
    assert handler.enqueue(_Broken(10))
    assert handler.enqueue(request_log(500, seq=2))
    assert handler.drain(30)
    assert [f["metadata"]["seq"] for f in entries_fields(collector.entries)] == [1, 2]
    assert handler.counters.sent == 2
    assert handler.counters.dropped_by == {"rejected": 1}
    assert [p.kind for p in seen] == ["rejected"] and "a bug" in seen[0].detail
    handler.close()


def test_deferred_logs_left_at_close_are_spooled_with_their_keys(tmp_path: Path) -> None:
    down = Scripted([retryable()] * 1000)
    handler = make_handler(down, spool_dir=tmp_path, retry_for=0.05, on_error=lambda _p: None)
    for seq in range(3):
        assert handler.enqueue(request_log(500, seq=seq))
    handler.close(timeout=2)
    assert handler.counters.spooled == 3
    spooled = [e for path in Spool(tmp_path, 1 << 20).files() for e in read(path)[0]]
    assert [accepted(e.data.decode())["metadata"]["seq"] for e in spooled] == [0, 1, 2]
    assert len({e.key for e in spooled}) == 3
