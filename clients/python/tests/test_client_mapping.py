"""How LMSHandler turns a LogRecord into a log, checked against the server's own rules
(lms.domain.record.parse_object): every log the client makes is one LMS accepts."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import logging
import math
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from client_support import Collector, entries_fields, make_handler
from lms.domain import record as server_record
from lms.domain.record import LogRecord, parse_message
from lms.ingest.http.edge import MAX_KEY as SERVER_MAX_KEY
from lms.ingest.sources.pubsub.keys import KEY_ATTRIBUTE as SERVER_KEY_ATTRIBUTE
from lms_client import limits
from lms_client.entry import Entry, from_line
from lms_client.jsonsafe import json_safe
from lms_client.mapping import TRUNCATED_KEYS, metadata_text, severity_of, timestamp_of, truncate
from lms_client.pubsub import KEY_ATTRIBUTE


def test_limits_are_the_servers() -> None:
    """The client restates the server's limits (it must not import it): they must agree."""
    assert limits.MAX_SERVICE_NAME == server_record.MAX_SERVICE_NAME
    assert limits.MAX_PAYLOAD == server_record.MAX_PAYLOAD
    assert limits.MAX_CONTEXT == server_record.MAX_CONTEXT
    assert limits.MAX_METADATA == server_record.MAX_METADATA
    assert limits.MAX_METADATA_DEPTH == server_record.MAX_METADATA_DEPTH
    assert limits.MAX_JSON_INT == server_record._MAX_JSON_INT
    assert limits.MAX_KEY == SERVER_MAX_KEY
    assert KEY_ATTRIBUTE == SERVER_KEY_ATTRIBUTE


@pytest.mark.parametrize(
    ("levelno", "severity"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warn"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "fatal"),
        (0, "debug"),  # NOTSET
        (5, "debug"),  # TRACE, as several libraries define it
        (14, "debug"),
        (15, "info"),  # a tie goes to the more severe
        (25, "warn"),  # NOTICE-like, a tie
        (24, "info"),
        (35, "error"),
        (45, "fatal"),
        (60, "fatal"),
    ],
)
def test_levels_map_to_the_nearest_severity(levelno: int, severity: str) -> None:
    assert severity_of(levelno) == severity


def test_timestamp_is_the_creation_time_in_microseconds_utc() -> None:
    created = datetime.datetime(2026, 12, 1, 8, 30, 5, 123456, tzinfo=datetime.UTC).timestamp()
    assert timestamp_of(created) == "2026-12-01T08:30:05.123456Z"
    assert timestamp_of(created + 1) == "2026-12-01T08:30:06.123456Z"  # the per-second cache
    assert timestamp_of(0.0) == "1970-01-01T00:00:00.000000Z"


def test_truncation_keeps_head_and_tail_with_a_marker() -> None:
    text = "H" * 3000 + "T" * 3000
    cut = truncate(text)
    assert len(cut) == limits.MAX_PAYLOAD
    assert cut.startswith("H" * 900) and cut.endswith("T" * 900)
    marker = cut[cut.rindex("H") + 1 : cut.index("T")]
    removed = len(text) - cut.count("H") - cut.count("T")
    assert marker == f"\n[... {removed} characters cut ...]\n"
    assert truncate("x" * limits.MAX_PAYLOAD) == "x" * limits.MAX_PAYLOAD


def test_every_field_of_a_record() -> None:
    """service_name, severity, payload, timestamp, metadata (extra= and the logger's name),
    resource_id and commit; and no `id` in the body (the key travels beside it)."""
    collector = Collector()
    handler = make_handler(collector, resource_id="pod-7", commit="abc123")
    logger = _logger(handler)
    logger.warning(
        "card %s declined", "4242", extra={"order": 1234, "user": {"id": "u-1", "vip": True}}
    )
    handler.close()
    (fields,) = entries_fields(collector.entries)
    record = collector.records[0]
    assert fields == {
        "service_name": "checkout",
        "severity": "warn",
        "payload": "card 4242 declined",
        "timestamp": timestamp_of(record.created),
        "resource_id": "pod-7",
        "commit": "abc123",
        "metadata": {
            "logger": "lms-client-test",
            "order": 1234,
            "user": {"id": "u-1", "vip": True},
        },
    }
    _accepted_by_lms(collector.entries)


def test_traceback_and_stack_are_in_the_payload() -> None:
    collector = Collector()
    handler = make_handler(collector)
    logger = _logger(handler)
    try:
        {}["missing"]
    except KeyError:
        logger.exception("lookup failed")
    logger.error("where", stack_info=True)
    handler.close()
    failed, stacked = entries_fields(collector.entries)
    assert failed["severity"] == "error"
    assert failed["payload"].startswith("lookup failed\nTraceback (most recent call last):")
    assert failed["payload"].endswith("KeyError: 'missing'")
    assert stacked["payload"].startswith("where\nStack (most recent call last):")


def test_a_long_traceback_is_cut_and_keeps_the_exception_line() -> None:
    collector = Collector()
    handler = make_handler(collector)
    logger = _logger(handler)

    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("the real cause")
        deep(n - 1)

    try:
        deep(60)
    except ValueError:
        logger.exception("x" * 5000)
    handler.close()
    (fields,) = entries_fields(collector.entries)
    assert len(fields["payload"]) == limits.MAX_PAYLOAD
    assert fields["payload"].startswith("xxx")
    assert fields["payload"].endswith("ValueError: the real cause")
    assert "characters cut ...]" in fields["payload"]
    _accepted_by_lms(collector.entries)


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: float


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_extra_values_become_json_lms_accepts() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["d"] = {}
        node = node["d"]
    extra = {
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "day": datetime.date(2026, 1, 2),
        "uuid": uuid.UUID(int=1),
        "price": decimal.Decimal("1.10"),
        "nan": math.nan,
        "inf": -math.inf,
        "huge": 10**400,
        "raw": b"\x00\xff",
        "tags": {"b", "a"},
        "colour": Colour.RED,
        "point": Point(1, 2.5),
        "error": ValueError("bad"),
        "bad_repr": BadRepr(),
        "cyclic": cyclic,
        "deep": deep,
        "surrogate": "x\udcff",
        "keys": {1: "int key", None: "none key"},
    }
    collector = Collector()
    handler = make_handler(collector)
    _logger(handler).info("zoo", extra=extra)
    handler.close()
    (fields,) = entries_fields(collector.entries)
    meta = fields["metadata"]
    assert meta["when"] == "2026-01-02T03:04:05+00:00"
    assert meta["day"] == "2026-01-02"
    assert meta["uuid"] == "00000000-0000-0000-0000-000000000001"
    assert meta["price"] == "1.10"
    assert (meta["nan"], meta["inf"]) == ("nan", "-inf")
    assert meta["huge"] == str(10**400)
    assert meta["raw"] == "AP8="
    assert meta["tags"] == ["a", "b"]
    assert meta["colour"] == "red"
    assert meta["point"] == {"x": 1, "y": 2.5}
    assert meta["error"] == "ValueError: bad"
    assert meta["bad_repr"] == "<BadRepr: repr failed>"
    assert meta["cyclic"] == [1, "<cycle>"]
    assert meta["surrogate"] == "x\ufffd"
    assert meta["keys"] == {"1": "int key", "None": "none key"}
    _accepted_by_lms(collector.entries)


def test_json_safe_never_raises() -> None:
    class Hostile(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("boom")

    assert json_safe(Hostile(a=1)) == "<Hostile: not convertible: RuntimeError>"


def test_oversized_metadata_is_cut_and_says_what_it_left_out() -> None:
    text = metadata_text({"small": 1, "big": "x" * 20_000, "after": "kept"})
    assert text is not None
    assert len(text) <= limits.MAX_METADATA
    assert json.loads(text) == {"small": 1, "after": "kept", TRUNCATED_KEYS: ["big"]}


def test_an_unformattable_message_is_sent_as_its_parts() -> None:
    collector = Collector()
    handler = make_handler(collector)
    _logger(handler).info("%d items", "not a number")
    handler.close()
    (fields,) = entries_fields(collector.entries)
    assert fields["payload"].startswith("'%d items' % ('not a number',)")
    assert "could not be formatted: TypeError" in fields["payload"]


def test_the_active_opentelemetry_span_is_the_logs_trace_context() -> None:
    tracer = TracerProvider().get_tracer("lms-client-test")
    collector = Collector()
    handler = make_handler(collector)
    logger = _logger(handler)
    with tracer.start_as_current_span("checkout") as span:
        logger.info("inside")
    logger.info("outside")
    handler.close()
    inside, outside = entries_fields(collector.entries)
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside and "span_id" not in outside
    _accepted_by_lms(collector.entries)


def test_keys_are_unique_and_lines_round_trip() -> None:
    collector = Collector()
    handler = make_handler(collector)
    logger = _logger(handler)
    for i in range(1000):
        logger.info("n %d", i)
    handler.close()
    keys = [e.key for e in collector.entries]
    assert len(set(keys)) == 1000
    assert all(1 <= len(k) <= limits.MAX_KEY for k in keys)
    for entry in collector.entries[:10]:
        line = entry.line()
        assert json.loads(line)["id"] == entry.key
        assert from_line(line) == entry
    odd = Entry("k", b'{"a":1}')
    assert from_line(b'{"a":1,"id":"k"}') == odd


@pytest.mark.parametrize(
    ("name", "problem"),
    [("", "has 0 characters"), ("s" * 101, "has 101 characters"), ("x\ud800", "surrogate")],
)
def test_service_name_is_checked_at_construction(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        make_handler(Collector(), service_name=name)


def test_service_name_must_be_a_string() -> None:
    with pytest.raises(ValueError, match="service_name must be a string"):
        make_handler(Collector(), service_name=42)  # type: ignore[arg-type]


def test_submit_queues_a_log_built_by_the_caller() -> None:
    """What a request-logging middleware uses: its own fields, the handler's queue."""
    collector = Collector()
    handler = make_handler(collector)
    start = datetime.datetime(2026, 12, 1, 9, 0, 0, 5, tzinfo=datetime.UTC)
    assert handler.submit(
        "warn", "GET /users/{id} 404", start, {"http": {"status_code": 404}}, key="req-1"
    )
    assert handler.submit(logging.ERROR, "boom")
    assert not handler.submit("loud", "x")  # not a severity: refused, counted, not raised
    handler.close()
    first, second = entries_fields(collector.entries)
    assert collector.entries[0].key == "req-1"
    assert first["timestamp"] == "2026-12-01T09:00:00.000005Z"
    assert first["metadata"] == {"http": {"status_code": 404}}
    assert second["severity"] == "error"
    assert handler.counters.dropped_by == {"rejected": 1}


def _logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger("lms-client-test")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def _accepted_by_lms(entries: list[Entry]) -> None:
    for entry in entries:
        parsed = parse_message(entry.data)
        assert isinstance(parsed, LogRecord), parsed


def test_structlog_through_the_stdlib_integration() -> None:
    """The README's structlog set-up: key-value pairs become metadata, exc_info a traceback."""
    import structlog

    collector = Collector()
    handler = make_handler(collector)
    _logger(handler)
    logger = structlog.wrap_logger(
        logging.getLogger("lms-client-test"),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.render_to_log_kwargs,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    logger.bind(order=7).warning("card %s declined", "4242", user="u-1")
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        logger.exception("failed")
    handler.close()
    declined, failed = entries_fields(collector.entries)
    assert declined["severity"] == "warn"
    assert declined["payload"] == "card 4242 declined"
    assert declined["metadata"] == {"logger": "lms-client-test", "order": 7, "user": "u-1"}
    assert failed["severity"] == "error"
    assert failed["payload"].endswith("ZeroDivisionError: division by zero")
