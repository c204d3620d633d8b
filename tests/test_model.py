"""parse_message: every body becomes a LogRecord or a Rejection with the right Reason."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from lms.domain.identifiers import identifier_problem
from lms.domain.record import (
    DEFAULT_RULES,
    MAX_CONTEXT,
    MAX_METADATA,
    MAX_METADATA_DEPTH,
    MAX_PAYLOAD,
    MAX_SEQ,
    MAX_SERVICE_NAME,
    LogRecord,
    Reason,
    Rejection,
    Rules,
    parse_message,
    parse_object,
)
from lms.domain.severity import SEVERITIES, Severity
from lms.domain.timefmt import parse_timestamp

VALID: dict[str, Any] = {
    "service_name": "checkout",
    "payload": "order 42 paid",
    "severity": "info",
    "timestamp": "2024-05-01T12:00:00Z",
}
FIELDS = ("service_name", "payload", "severity", "timestamp")
CONTEXT_FIELDS = ("resource_id", "trace_id", "span_id", "commit", "metadata")


def body(**changes: Any) -> bytes:
    """VALID with some fields changed; a value of ... removes the field."""
    obj = {**VALID, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


END_OF_TIME = Rules(clock=lambda: datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())
"""Rules whose clock is the last moment MySQL can store: no timestamp is in its future."""


def rejected(data: bytes, rules: Rules = DEFAULT_RULES) -> Rejection:
    result = parse_message(data, rules)
    assert isinstance(result, Rejection), f"expected a Rejection, got {result!r}"
    return result


def accepted(data: bytes, rules: Rules = DEFAULT_RULES) -> LogRecord:
    result = parse_message(data, rules)
    assert isinstance(result, LogRecord), f"expected a LogRecord, got {result!r}"
    return result


# --- valid messages ------------------------------------------------------------------------


def test_valid_message_becomes_a_log_record() -> None:
    assert accepted(body()) == LogRecord(
        service_name="checkout",
        payload="order 42 paid",
        severity="info",
        timestamp=datetime(2024, 5, 1, 12, 0, 0),
    )


def test_extra_fields_are_ignored_and_kept_out_of_the_record() -> None:
    record = accepted(body(traceparent="abc", nested={"a": [1, 2]}, severity_number=9))
    assert record == accepted(body())
    assert [f.name for f in dataclasses.fields(record)] == [*FIELDS, *CONTEXT_FIELDS]
    assert not hasattr(record, "traceparent")
    assert not hasattr(record, "nested")


@pytest.mark.parametrize("severity", [s.value for s in Severity])
def test_every_severity_is_accepted(severity: str) -> None:
    assert accepted(body(severity=severity)).severity == severity


def test_severities_match_the_enum_column_order() -> None:
    assert [s.value for s in Severity] == ["debug", "info", "warn", "error", "fatal"]
    assert frozenset(s.value for s in Severity) == SEVERITIES


def test_limits_are_inclusive() -> None:
    record = accepted(body(service_name="s" * MAX_SERVICE_NAME, payload="p" * MAX_PAYLOAD))
    assert len(record.service_name) == 100
    assert len(record.payload) == 2048


def test_empty_payload_is_allowed() -> None:
    assert accepted(body(payload="")).payload == ""


def test_limits_count_characters_not_bytes() -> None:
    # 2048 four-byte characters: 8 KB of UTF-8 but 2048 characters, as VARCHAR(2048) counts.
    record = accepted(body(payload="\U0001f600" * 2048, service_name="ü" * 100))
    assert len(record.payload) == 2048


def test_non_ascii_is_kept_whether_escaped_or_raw() -> None:
    raw = json.dumps({**VALID, "payload": "héllo ✓ 日本"}, ensure_ascii=False).encode()
    escaped = json.dumps({**VALID, "payload": "héllo ✓ 日本"}, ensure_ascii=True).encode()
    assert accepted(raw).payload == accepted(escaped).payload == "héllo ✓ 日本"


def test_a_1mb_message_with_valid_fields_and_a_huge_extra_field_is_accepted() -> None:
    data = body(blob="x" * (1 << 20))
    assert len(data) > 1 << 20
    assert accepted(data) == accepted(body())


# --- rejections: encoding and JSON ---------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b'{"service_name": "\xc3\x28"}',
        body()[:-2] + b"\x80}",
        b'{"payload": "\xed\xa0\x80"}',  # a UTF-8 encoded surrogate is not UTF-8
    ],
)
def test_invalid_utf8_is_rejected(data: bytes) -> None:
    rejection = rejected(data)
    assert rejection.reason is Reason.INVALID_UTF8
    assert "byte" in rejection.detail


@pytest.mark.parametrize(
    "data",
    [b"", b" ", b"{", b'{"a": 1,}', b"{'a': 1}", b"nope", b'{"a": 1} {"b": 2}', b"\x00"],
)
def test_not_json_is_rejected(data: bytes) -> None:
    assert rejected(data).reason is Reason.INVALID_JSON


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"[]", "list"),
        (b"[" + body() + b"]", "list"),
        (b'"a string"', "str"),
        (b"42", "int"),
        (b"-1.5e3", "float"),
        (b"null", "NoneType"),
        (b"true", "bool"),
    ],
)
def test_json_that_is_not_an_object_is_rejected(data: bytes, kind: str) -> None:
    rejection = rejected(data)
    assert rejection.reason is Reason.NOT_AN_OBJECT
    assert kind in rejection.detail


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b'{"service_name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["lists", "objects", "inside-a-field"],
)
def test_deeply_nested_json_is_rejected_not_a_crash(data: bytes) -> None:
    assert rejected(data).reason is Reason.INVALID_JSON


def test_a_1mb_message_of_garbage_is_rejected() -> None:
    assert rejected(b"{" + b"x" * (1 << 20)).reason is Reason.INVALID_JSON


def test_a_1mb_payload_is_rejected_as_too_long() -> None:
    rejection = rejected(body(payload="p" * (1 << 20)))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "payload" in rejection.detail


def test_integer_too_long_to_convert_is_rejected_not_raised() -> None:
    assert rejected(b'{"n": ' + b"1" * 5000 + b"}").reason is Reason.INVALID_JSON


# --- rejections: fields --------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
def test_missing_field_is_rejected(field: str) -> None:
    rejection = rejected(body(**{field: ...}))
    assert rejection.reason is Reason.MISSING_FIELD
    assert field in rejection.detail


@pytest.mark.parametrize("field", FIELDS)
def test_null_field_counts_as_missing(field: str) -> None:
    rejection = rejected(body(**{field: None}))
    assert rejection.reason is Reason.MISSING_FIELD
    assert field in rejection.detail


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", [1, 1.5, True, False, [], ["info"], {}, {"a": "b"}])
def test_field_of_wrong_type_is_rejected(field: str, value: object) -> None:
    rejection = rejected(body(**{field: value}))
    assert rejection.reason is Reason.INVALID_FIELD
    assert field in rejection.detail


@pytest.mark.parametrize(
    "severity", ["INFO", "Info", "warning", "trace", "critical", "", " info", "info ", "inf"]
)
def test_unknown_severity_is_rejected(severity: str) -> None:
    rejection = rejected(body(severity=severity))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "severity" in rejection.detail


def test_payload_of_2049_characters_is_rejected() -> None:
    rejection = rejected(body(payload="p" * (MAX_PAYLOAD + 1)))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "payload" in rejection.detail
    assert "2049" in rejection.detail


def test_service_name_of_101_characters_is_rejected() -> None:
    rejection = rejected(body(service_name="s" * (MAX_SERVICE_NAME + 1)))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "service_name" in rejection.detail


def test_empty_service_name_is_rejected() -> None:
    rejection = rejected(body(service_name=""))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "service_name" in rejection.detail


# A JSON-escaped lone surrogate decodes to a str that cannot be encoded as utf8mb4: accepted,
# its INSERT would fail on every redelivery (a poison batch), so it is rejected up front.
@pytest.mark.parametrize("field", ["service_name", "payload"])
def test_lone_surrogate_is_rejected(field: str) -> None:
    data = body(**{field: "ok \ud800 then"})
    assert b"\\ud800" in data  # json.dumps escapes it, so the bytes are valid UTF-8
    rejection = rejected(data)
    assert rejection.reason is Reason.INVALID_FIELD
    assert field in rejection.detail


def test_surrogate_pair_escape_is_one_valid_character() -> None:
    record = accepted(body(payload="\U0001f600"))  # json.dumps writes "\ud83d\ude00"
    assert record.payload == "\U0001f600"


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-05-01T12:00:00",  # no offset: ambiguous
        "2024-05-01T12:00:00.123456",
        "2024-05-01 12:00:00",
        "2024-05-01",
        "12:00:00Z",
        "2024-05-01T12:00Z",
        "2024-05-01T12:00:00+0200",
        "2024-05-01T12:00:00+02",
        "2024-05-01T12:00:00 +02:00",
        "20240501T120000Z",
        "2024/05/01 12:00:00Z",
        "2024-05-01T12:00:00,5Z",
        "1714564800",
        "Wed, 01 May 2024 12:00:00 GMT",
        " 2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00Z ",
        "2024-05-01T12:00:00Z\n",
        "2024-5-1T12:00:00Z",
        "٢٠٢٤-05-01T12:00:00Z",  # Arabic-Indic digits match \\d but are not RFC 3339
        "",
    ],
)
def test_timestamp_in_another_format_is_rejected(timestamp: str) -> None:
    rejection = rejected(body(timestamp=timestamp))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "timestamp" in rejection.detail


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2024-05-00T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:60:00Z",
        "2024-05-01T12:00:61Z",
        "2024-05-01T12:00:00+24:00",
        "2024-05-01T12:00:00-99:99",
        "0000-01-01T00:00:00Z",
        "0999-12-31T23:59:59Z",  # before MySQL's DATETIME range
        "1000-01-01T00:30:00+01:00",  # 0999 in UTC
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    ],
)
def test_invalid_or_out_of_range_date_is_rejected(timestamp: str) -> None:
    rejection = rejected(body(timestamp=timestamp))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "timestamp" in rejection.detail


def test_overlong_timestamp_is_rejected() -> None:
    rejection = rejected(body(timestamp="2024-05-01T12:00:00." + "1" * 60 + "Z"))
    assert rejection.reason is Reason.INVALID_FIELD


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, 0)),
        ("2024-05-01T12:00:00+00:00", datetime(2024, 5, 1, 12, 0, 0)),
        ("2024-05-01T12:00:00-00:00", datetime(2024, 5, 1, 12, 0, 0)),
        ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, 0)),
        ("2024-05-01T07:00:00-05:00", datetime(2024, 5, 1, 12, 0, 0)),
        ("2024-05-01T17:45:00+05:45", datetime(2024, 5, 1, 12, 0, 0)),
        ("2024-01-01T01:00:00+02:00", datetime(2023, 12, 31, 23, 0, 0)),  # crosses a year
        ("2024-02-28T23:00:00-02:00", datetime(2024, 2, 29, 1, 0, 0)),  # into a leap day
        ("2024-05-01 12:00:00Z", datetime(2024, 5, 1, 12, 0, 0)),
        ("2024-05-01t12:00:00Z", datetime(2024, 5, 1, 12, 0, 0)),
        ("2024-05-01T12:00:00.5Z", datetime(2024, 5, 1, 12, 0, 0, 500_000)),
        ("2024-05-01T12:00:00.123456+01:00", datetime(2024, 5, 1, 11, 0, 0, 123_456)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123_456)),
        ("1000-01-01T00:00:00Z", datetime(1000, 1, 1)),
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999_999)),
    ],
)
def test_timestamp_is_converted_to_naive_utc(timestamp: str, expected: datetime) -> None:
    parsed = parse_timestamp(timestamp)
    assert parsed == expected
    assert parsed.tzinfo is None
    assert accepted(body(timestamp=timestamp), END_OF_TIME).timestamp == expected


def test_lower_case_z_is_accepted() -> None:
    assert parse_timestamp("2024-05-01T12:00:00z") == datetime(2024, 5, 1, 12, 0, 0)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999_999)),
        ("2016-12-31T23:59:60.5Z", datetime(2016, 12, 31, 23, 59, 59, 999_999)),
        ("2017-01-01T00:59:60+01:00", datetime(2016, 12, 31, 23, 59, 59, 999_999)),
    ],
)
def test_leap_second_is_kept_as_the_last_microsecond_of_its_minute(
    timestamp: str, expected: datetime
) -> None:
    assert accepted(body(timestamp=timestamp)).timestamp == expected


def test_leap_second_on_an_invalid_date_is_still_rejected() -> None:
    assert rejected(body(timestamp="2016-02-30T23:59:60Z")).reason is Reason.INVALID_FIELD


# --- properties ----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None, exclude_categories=()))
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
log_like_values = st.one_of(
    json_values,
    st.sampled_from([*SEVERITIES, "INFO", "warning", ""]),
    st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01T12:00:00", "2016-12-31T23:59:60Z"]),
    st.text(max_size=3000),
)
json_objects = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=10), log_like_values, max_size=8
)


def assert_well_formed(result: object) -> None:
    assert isinstance(result, LogRecord | Rejection)
    if isinstance(result, Rejection):
        assert isinstance(result.reason, Reason)
        assert result.detail
    else:
        assert result.severity in SEVERITIES
        assert 1 <= len(result.service_name) <= MAX_SERVICE_NAME
        assert len(result.payload) <= MAX_PAYLOAD
        assert result.timestamp.tzinfo is None
        assert result.timestamp.year >= 1000


@given(st.binary(max_size=4096))
def test_parse_message_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    assert_well_formed(parse_message(data))


@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow])
@given(json_objects, st.booleans())
def test_parse_message_never_raises_on_arbitrary_json_objects(
    obj: dict[str, Any], ascii_only: bool
) -> None:
    # Lone surrogates become \\udXXX escapes (ascii) or invalid UTF-8 bytes (surrogatepass).
    data = json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert_well_formed(parse_message(data))


@given(json_values)
def test_parse_message_never_raises_on_arbitrary_json(value: object) -> None:
    data = json.dumps(value).encode()
    result = parse_message(data)
    assert_well_formed(result)
    if not isinstance(value, dict):
        assert isinstance(result, Rejection)
        assert result.reason is Reason.NOT_AN_OBJECT


@given(
    service=st.text(min_size=1, max_size=MAX_SERVICE_NAME).filter(
        lambda name: identifier_problem(name) is None
    ),
    payload=st.text(max_size=MAX_PAYLOAD),
    severity=st.sampled_from(sorted(SEVERITIES)),
    moment=st.datetimes(min_value=datetime(1001, 1, 2), max_value=datetime(9998, 12, 30)),
    offset_minutes=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_valid_logs_round_trip(
    service: str, payload: str, severity: str, moment: datetime, offset_minutes: int
) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    data = json.dumps(
        {
            "service_name": service,
            "payload": payload,
            "severity": severity,
            "timestamp": aware.isoformat(),
        }
    ).encode()
    assert parse_message(data, END_OF_TIME) == LogRecord(
        service, payload, severity, aware.astimezone(UTC).replace(tzinfo=None)
    )


# --- tracing context and the alternative spelling (sql/002_log_context.sql) -----------------


def test_context_fields_are_stored() -> None:
    record = accepted(
        body(
            resource_id="vm-7",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
            commit="9fceb02d0ae598e95dc970b74767f19372d61af8",
            metadata={"parentResourceId": "cluster-1", "zone": "eu", "n": [1, 2.5, None]},
        )
    )
    assert record.resource_id == "vm-7"
    assert record.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert record.span_id == "00f067aa0ba902b7"
    assert record.commit == "9fceb02d0ae598e95dc970b74767f19372d61af8"
    assert record.metadata is not None
    assert json.loads(record.metadata) == {
        "parentResourceId": "cluster-1",
        "zone": "eu",
        "n": [1, 2.5, None],
    }
    assert record.service_name == "checkout"


def test_context_fields_default_to_none() -> None:
    record = accepted(body())
    assert (record.resource_id, record.trace_id, record.span_id, record.commit) == (None,) * 4
    assert record.metadata is None


@pytest.mark.parametrize("field", ["resource_id", "trace_id", "span_id", "commit", "metadata"])
def test_null_context_field_is_absent(field: str) -> None:
    assert accepted(body(**{field: None})) == accepted(body())


@pytest.mark.parametrize("field", ["resource_id", "trace_id", "span_id", "commit"])
def test_empty_context_field_is_absent(field: str) -> None:
    assert getattr(accepted(body(**{field: ""})), field) is None


def test_camel_case_spellings_are_accepted() -> None:
    record = accepted(body(resourceId="r-1", traceId="t-1", spanId="s-1"))
    assert (record.resource_id, record.trace_id, record.span_id) == ("r-1", "t-1", "s-1")


def test_snake_case_wins_over_camel_case() -> None:
    record = accepted(body(trace_id="snake", traceId="camel", resourceId="c", resource_id="s"))
    assert (record.trace_id, record.resource_id) == ("snake", "s")


def test_level_and_message_spelling() -> None:
    data = json.dumps(
        {
            "resourceId": "api-gateway",
            "message": "Failed to connect",
            "level": "error",
            "timestamp": "2024-05-01T12:00:00Z",
        }
    ).encode()
    record = accepted(data)
    assert record.service_name == "api-gateway"  # falls back to resource_id
    assert record.resource_id == "api-gateway"
    assert record.payload == "Failed to connect"
    assert record.severity == "error"


@pytest.mark.parametrize(
    ("level", "severity"),
    [("ERROR", "error"), ("Warning", "warn"), ("warn", "warn"), ("CRITICAL", "fatal")],
)
def test_level_is_case_insensitive_with_common_synonyms(level: str, severity: str) -> None:
    assert accepted(body(severity=..., level=level)).severity == severity


@pytest.mark.parametrize("level", ["trace", "verbose", "", "infos", 3])
def test_unknown_level_is_rejected_naming_level(level: object) -> None:
    rejection = rejected(body(severity=..., level=level))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "level" in rejection.detail


def test_canonical_spelling_wins_over_the_alternative() -> None:
    record = accepted(body(level="fatal", message="other"))
    assert (record.severity, record.payload) == ("info", "order 42 paid")


def test_missing_severity_and_level_names_both() -> None:
    rejection = rejected(body(severity=...))
    assert rejection.reason is Reason.MISSING_FIELD
    assert "'severity'" in rejection.detail
    assert "'level'" in rejection.detail


def test_service_name_wins_over_resource_id() -> None:
    assert accepted(body(resource_id="vm-1")).service_name == "checkout"


def test_missing_service_name_and_resource_id_is_rejected() -> None:
    assert rejected(body(service_name=...)).reason is Reason.MISSING_FIELD


def test_resource_id_too_long_for_a_service_name_is_rejected() -> None:
    rejection = rejected(body(service_name=..., resource_id="r" * 101))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "service_name" in rejection.detail
    assert "resource_id" in rejection.detail
    # ...but as a resource_id next to a service_name, 101..255 characters are fine.
    assert accepted(body(resource_id="r" * 255)).resource_id == "r" * 255


@pytest.mark.parametrize("field", ["resource_id", "trace_id", "span_id", "commit"])
def test_context_field_limit_is_255_characters(field: str) -> None:
    assert getattr(accepted(body(**{field: "é" * 255})), field) == "é" * 255
    rejection = rejected(body(**{field: "x" * 256}))
    assert rejection.reason is Reason.INVALID_FIELD
    assert field in rejection.detail
    assert "256" in rejection.detail


@pytest.mark.parametrize("field", ["resource_id", "traceId", "span_id", "commit"])
@pytest.mark.parametrize("value", [1, 1.5, True, [], ["a"], {"a": "b"}])
def test_context_field_of_wrong_type_is_rejected(field: str, value: object) -> None:
    rejection = rejected(body(**{field: value}))
    assert rejection.reason is Reason.INVALID_FIELD
    assert field in rejection.detail


@pytest.mark.parametrize("field", ["resource_id", "trace_id", "span_id", "commit"])
def test_context_field_with_lone_surrogate_is_rejected(field: str) -> None:
    rejection = rejected(body(**{field: "a\ud800"}))
    assert rejection.reason is Reason.INVALID_FIELD
    assert field in rejection.detail


@pytest.mark.parametrize("value", [[], [1], "x", 1, True])
def test_metadata_must_be_an_object(value: object) -> None:
    rejection = rejected(body(metadata=value))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "metadata" in rejection.detail
    assert "object" in rejection.detail


def test_metadata_is_stored_as_compact_json_keeping_non_ascii() -> None:
    record = accepted(body(metadata={"a": "日本", "b": {"c": [True, False]}}))
    assert record.metadata == '{"a":"日本","b":{"c":[true,false]}}'


def test_empty_metadata_object_is_kept() -> None:
    assert accepted(body(metadata={})).metadata == "{}"


def test_metadata_nesting_limit() -> None:
    def nested(depth: int) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for _ in range(depth - 1):
            value = {"a": value}
        return value

    assert accepted(body(metadata=nested(MAX_METADATA_DEPTH))).metadata is not None
    rejection = rejected(body(metadata=nested(MAX_METADATA_DEPTH + 1)))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "nested" in rejection.detail
    lists: Any = {"a": 1}
    for _ in range(MAX_METADATA_DEPTH):
        lists = [lists]
    assert rejected(body(metadata={"l": lists})).reason is Reason.INVALID_FIELD


def test_metadata_size_limit() -> None:
    fits = {"a": "x" * (MAX_METADATA - len('{"a":""}'))}
    assert len(accepted(body(metadata=fits)).metadata or "") == MAX_METADATA
    rejection = rejected(body(metadata={"a": "x" * MAX_METADATA}))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "metadata" in rejection.detail


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"a": ' + b"9" * 400 + b"}",
        b'{"a": "\\ud800"}',
        b'{"\\udfff": 1}',
    ],
)
def test_metadata_the_database_would_refuse_is_rejected(raw: bytes) -> None:
    data = body()[:-1] + b', "metadata": ' + raw + b"}"
    rejection = rejected(data)
    assert rejection.reason is Reason.INVALID_FIELD
    assert "metadata" in rejection.detail


def test_parent_resource_id_limit() -> None:
    assert accepted(body(metadata={"parentResourceId": "p" * 255})).metadata
    rejection = rejected(body(metadata={"parentResourceId": "p" * 256}))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "parentResourceId" in rejection.detail


@pytest.mark.parametrize("parent", [None, 1, ["a"], {"a": "b"}, "x" * 2000])
def test_parent_resource_id_that_is_not_a_string_is_kept_but_not_indexed(parent: object) -> None:
    # The generated column takes only JSON strings; other values stay in metadata only.
    if isinstance(parent, str):
        assert rejected(body(metadata={"parentResourceId": parent})).reason
    else:
        assert accepted(body(metadata={"parentResourceId": parent})).metadata


# --- request context (sql/008_user_requests.sql) ------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        {"user_id": "u", "instance": "host-1:4242", "seq": 0},
        {"user_id": "u" * MAX_CONTEXT, "instance": "i" * MAX_CONTEXT, "seq": MAX_SEQ},
        {"user_id": 42},
        {"user_id": -(2**63)},
        {"user_id": 2**64 - 1},
        {"instance": ""},
        {"user_id": None, "instance": None, "seq": None},  # null is absent
        {"seq": 7},  # each key alone
    ],
)
def test_request_context_within_the_rules_is_kept(metadata: dict[str, Any]) -> None:
    assert json.loads(accepted(body(metadata=metadata)).metadata or "") == metadata


@pytest.mark.parametrize(
    ("metadata", "detail"),
    [
        ({"user_id": ""}, "metadata.user_id has 0 characters, allowed 1..255"),
        ({"user_id": "u" * 256}, "metadata.user_id has 256 characters, allowed 1..255"),
        ({"user_id": True}, "metadata.user_id must be a string or an integer, not a boolean"),
        ({"user_id": 4.2}, "metadata.user_id must be a string or an integer, not a number"),
        ({"user_id": 42.0}, "metadata.user_id must be a string or an integer, not a number"),
        ({"user_id": ["u"]}, "metadata.user_id must be a string or an integer, not an array"),
        ({"user_id": {"id": 1}}, "metadata.user_id must be a string or an integer, not an obj"),
        ({"user_id": 2**64}, "metadata.user_id is an integer beyond 64 bits"),
        ({"user_id": -(2**63) - 1}, "metadata.user_id is an integer beyond 64 bits"),
        ({"instance": "i" * 256}, "metadata.instance has 256 characters, allowed at most 255"),
        ({"instance": 7}, "metadata.instance must be a string, not an integer"),
        ({"seq": -1}, "metadata.seq must be in 0..999999999999999999"),
        ({"seq": MAX_SEQ + 1}, "metadata.seq must be in 0..999999999999999999"),
        ({"seq": "7"}, "metadata.seq must be an integer, not a string"),
        ({"seq": 7.0}, "metadata.seq must be an integer, not a number with a fraction"),
        ({"seq": False}, "metadata.seq must be an integer, not a boolean"),
    ],
)
def test_request_context_beyond_the_rules_is_refused(metadata: dict[str, Any], detail: str) -> None:
    """What the generated columns could not hold exactly is refused at the edge, never
    stored un-indexed (so a user's requests are never missing from their listing)."""
    rejection = rejected(body(metadata={"other": 1, **metadata}))
    assert rejection.reason is Reason.INVALID_FIELD
    assert rejection.detail.startswith(detail), rejection.detail


def test_request_context_rules_hold_on_the_top_level_only() -> None:
    nested = {"http": {"user_id": True, "seq": "x", "instance": 1}}
    assert accepted(body(metadata=nested)).metadata


context_values = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.integers(),
    json_values,
)


@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                *FIELDS,
                *CONTEXT_FIELDS,
                "resourceId",
                "traceId",
                "spanId",
                "level",
                "message",
            ]
        ),
        st.one_of(log_like_values, context_values),
        max_size=12,
    ),
    json_values,
)
def test_parse_message_never_raises_with_context_fields(obj: dict[str, Any], meta: object) -> None:
    obj = {**VALID, **obj}
    if isinstance(meta, dict):
        obj["metadata"] = meta
    data = json.dumps(obj).encode()
    result = parse_message(data)
    assert_well_formed(result)
    if isinstance(result, LogRecord):
        for name in ("resource_id", "trace_id", "span_id", "commit"):
            value = getattr(result, name)
            assert value is None or 1 <= len(value) <= MAX_CONTEXT
        if result.metadata is not None:
            assert isinstance(json.loads(result.metadata), dict)
            assert len(result.metadata) <= MAX_METADATA
            result.metadata.encode("utf-8")  # storable as utf8mb4


# --- names and ids: no whitespace at the ends, no control characters (issue 14) ------------
# utf8mb4_bin is PAD SPACE: `svc` and `svc ` would be one service, one trace, one key.

IDENTIFIER_FIELDS = ["service_name", "resource_id", "trace_id", "traceId", "span_id", "commit"]
UNTRIMMED = ["svc ", " svc", "svc   ", "svc\u00a0", "\u3000svc", " "]
CONTROLS = ["a\x1b[31mred", "a\x00b", "a\x07", "a\x7fb", "a\x9b31m", "a\nb", "a\tb"]
CONTROL_OF = {value: next(c for c in value if not c.isprintable()) for value in CONTROLS}


@pytest.mark.parametrize("field", IDENTIFIER_FIELDS)
@pytest.mark.parametrize("value", UNTRIMMED)
def test_a_name_or_id_with_whitespace_at_an_end_is_rejected_not_trimmed(
    field: str, value: str
) -> None:
    rejection = rejected(body(**{field: value}))
    assert rejection.reason is Reason.INVALID_FIELD
    assert repr(field) in rejection.detail
    assert "whitespace" in rejection.detail


def test_a_resource_id_standing_in_for_the_service_name_is_checked_too() -> None:
    rejection = rejected(body(service_name=..., resource_id="svc "))
    assert rejection.reason is Reason.INVALID_FIELD
    assert "resource_id" in rejection.detail


def test_a_parent_resource_id_with_whitespace_or_a_control_is_rejected() -> None:
    for value in ("node-7 ", "node\x1b7"):
        rejection = rejected(body(metadata={"parentResourceId": value}))
        assert rejection.reason is Reason.INVALID_FIELD
        assert "metadata.parentResourceId" in rejection.detail


@pytest.mark.parametrize("field", IDENTIFIER_FIELDS)
@pytest.mark.parametrize("value", CONTROLS)
def test_a_name_or_id_with_a_control_character_is_rejected(field: str, value: str) -> None:
    rejection = rejected(body(**{field: value}))
    assert rejection.reason is Reason.INVALID_FIELD
    assert repr(field) in rejection.detail
    assert f"U+{ord(CONTROL_OF[value]):04X}" in rejection.detail


@pytest.mark.parametrize(
    "value", ["checkout api", "a b", "é-service", "svc\u200b", "\U0001f600", "x" * 100]
)
def test_inner_spaces_and_other_printable_text_are_fine(value: str) -> None:
    record = accepted(body(service_name=value, trace_id=value))
    assert (record.service_name, record.trace_id) == (value, value)


def test_a_payload_may_hold_control_characters_and_spaces() -> None:
    payload = " \x1b[31mred\x1b[0m\nnext line\t "
    assert accepted(body(payload=payload)).payload == payload


# --- timestamps ahead of the clock (MAX_FUTURE_SKEW) ----------------------------------------

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC).timestamp()
AT_NOW = Rules(max_future_skew=600, clock=lambda: NOW)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-12-01T09:10:00Z",  # exactly the grace ahead
        "2026-12-01T11:10:00+02:00",  # the same instant, in another offset
        "2026-12-01T09:00:00Z",
        "2024-05-01T12:00:00Z",
    ],
)
def test_a_timestamp_up_to_the_grace_ahead_is_accepted(timestamp: str) -> None:
    assert accepted(body(timestamp=timestamp), AT_NOW)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-12-01T09:10:00.000001Z",
        "2026-12-01T10:10:00.5+01:00",
        "2027-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ],
)
def test_a_timestamp_further_ahead_is_rejected_naming_the_setting(timestamp: str) -> None:
    rejection = rejected(body(timestamp=timestamp), AT_NOW)
    assert rejection.reason is Reason.INVALID_FIELD
    assert "MAX_FUTURE_SKEW" in rejection.detail
    assert timestamp in rejection.detail


def test_the_grace_is_the_setting_and_zero_means_none() -> None:
    strict = Rules(max_future_skew=0, clock=lambda: NOW)
    assert accepted(body(timestamp="2026-12-01T09:00:00Z"), strict)
    assert rejected(body(timestamp="2026-12-01T09:00:00.000001Z"), strict)
    lenient = Rules(max_future_skew=86400, clock=lambda: NOW)
    assert accepted(body(timestamp="2026-12-02T09:00:00Z"), lenient)


def test_the_default_grace_is_ten_minutes_of_the_wall_clock() -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    later = (datetime.now(UTC) + timedelta(minutes=15)).isoformat()
    assert accepted(body(timestamp=soon))
    assert rejected(body(timestamp=later)).reason is Reason.INVALID_FIELD


def test_parse_object_applies_the_same_rules() -> None:
    fields = {**VALID, "timestamp": "2027-01-01T00:00:00Z"}
    assert isinstance(parse_object(fields, AT_NOW), Rejection)
    assert isinstance(parse_object({**VALID, "service_name": "svc "}), Rejection)
    assert isinstance(parse_object(VALID, AT_NOW), LogRecord)


# --- duplicate keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (
            b'{"service_name": "a", "payload": "p", "severity": "info",'
            b' "timestamp": "2024-05-01T12:00:00Z", "service_name": "b"}',
            "service_name",
        ),
        (
            b'{"service_name": "a", "payload": "p", "severity": "info",'
            b' "severity": "error", "timestamp": "2024-05-01T12:00:00Z"}',
            "severity",
        ),
        (
            b'{"service_name": "a", "payload": "p", "severity": "info",'
            b' "timestamp": "2024-05-01T12:00:00Z", "metadata": {"k": 1, "k": 2}}',
            "k",
        ),
        (b'{"x": [{"\\u0061": 1, "a": 2}]}', "a"),  # the same key once decoded
        (b'{"extra": 1, "extra": 1}', "extra"),  # even an ignored field, even equal
    ],
)
def test_a_key_given_twice_is_invalid_json_naming_it(data: bytes, key: str) -> None:
    rejection = rejected(data)
    assert rejection.reason is Reason.INVALID_JSON
    assert repr(key) in rejection.detail


def test_the_same_key_in_different_objects_is_fine() -> None:
    assert accepted(body(metadata={"service_name": "x", "a": {"service_name": "y"}}))
