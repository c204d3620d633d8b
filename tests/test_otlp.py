"""The OTLP/HTTP logs decoder (lms.ingest.http.otlp): the mapping of each log record field to
the native ones, both encodings, the content-derived keys and the OTLP answers; and the router's
own answers (gzip, limits, publisher refusals) with a stand-in publisher. Pure: no emulator,
no database (tests/test_otlp_ingest.py has those)."""

from __future__ import annotations

import base64
import gzip
import json

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from lms.ingest.http import otlp
from lms.ingest.http.edge import Accepted, Candidate, Refused, check
from lms.ingest.http.errors import BadRequest, Overloaded, PayloadTooLarge, PublishUnavailable
from lms.ingest.http.otlp import Encoding
from tests.helpers import ingest_app

NANOS = 1_764_547_200_123_456_789  # 2025-12-01T00:00:00.123456789Z
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")


def attr(key: str, value: object) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def any_value(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(item) for item in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(attr(k, v) for k, v in value.items())
        return out
    return AnyValue(string_value=str(value))


def record(**overrides: object) -> LogRecord:
    fields: dict[str, object] = {"time_unix_nano": NANOS, "body": any_value("hello")}
    fields.update(overrides)
    return LogRecord(**fields)  # type: ignore[arg-type]


def request(
    *records: LogRecord,
    service: str | None = "checkout",
    resource: dict[str, object] | None = None,
    scope_name: str = "",
) -> ExportLogsServiceRequest:
    message = ExportLogsServiceRequest()
    resource_logs = message.resource_logs.add()
    attrs = dict(resource or {})
    if service is not None:
        attrs["service.name"] = service
    resource_logs.resource.attributes.extend(attr(k, v) for k, v in attrs.items())
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = scope_name
    scope_logs.log_records.extend(records)
    return message


def one(message: ExportLogsServiceRequest) -> Candidate:
    [item] = otlp.decode(message.SerializeToString(), Encoding.PROTOBUF)
    assert isinstance(item, Candidate), item
    return item


def test_a_plain_record_maps_to_the_native_fields() -> None:
    item = one(request(record(trace_id=TRACE, span_id=SPAN, severity_number=13)))
    assert item.index == 0
    assert item.fields == {
        "service_name": "checkout",
        "payload": "hello",
        "severity": "warn",
        "timestamp": "2025-12-01T00:00:00.123456Z",
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "metadata": {"resource": {"service.name": "checkout"}},
    }
    accepted, refused = check([item])
    assert refused == [] and accepted[0].key == item.key


@pytest.mark.parametrize(
    ("number", "severity"),
    [(n, "debug") for n in range(1, 9)]
    + [(n, "info") for n in range(9, 13)]
    + [(n, "warn") for n in range(13, 17)]
    + [(n, "error") for n in range(17, 21)]
    + [(n, "fatal") for n in range(21, 25)],
)
def test_every_severity_number_band(number: int, severity: str) -> None:
    assert otlp.severity_of(number, "ignored when the number is set") == severity


@pytest.mark.parametrize(
    ("text", "severity"),
    [
        ("TRACE", "debug"),
        ("debug", "debug"),
        ("Info", "info"),
        ("INFO2", "info"),
        ("notice", "info"),
        ("WARNING", "warn"),
        ("warn4", "warn"),
        ("Error", "error"),
        ("err", "error"),
        ("CRITICAL", "fatal"),
        ("fatal", "fatal"),
        ("emergency", "fatal"),
        ("", "info"),
        ("loud", "info"),
        ("INFO9", "info"),
    ],
)
def test_severity_text_when_the_number_is_unset_or_out_of_range(text: str, severity: str) -> None:
    assert otlp.severity_of(0, text) == severity
    assert otlp.severity_of(25, text) == severity


def test_severity_text_is_read_from_the_record() -> None:
    assert one(request(record(severity_text="ERROR"))).fields["severity"] == "error"
    assert one(request(record())).fields["severity"] == "info"


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        ("text as is", "text as is"),
        (42, "42"),
        (True, "true"),
        (1.5, "1.5"),
        (float("nan"), '"NaN"'),
        (b"\x00\xff", '"AP8="'),
        ([1, "two", [3]], '[1,"two",[3]]'),
        ({"user": "ünï", "ok": False}, '{"user":"ünï","ok":false}'),
    ],
)
def test_body_kinds(body: object, payload: str) -> None:
    assert one(request(record(body=any_value(body)))).fields["payload"] == payload


def test_a_record_without_body_has_an_empty_payload() -> None:
    bare = LogRecord(time_unix_nano=NANOS)
    assert one(request(bare)).fields["payload"] == ""
    assert one(request(record(body=AnyValue()))).fields["payload"] == ""


def test_attributes_resource_and_scope_go_to_metadata() -> None:
    rec = record(
        attributes=[attr("http.status", 500), attr("ratio", 0.5), attr("tags", ["a", "b"])],
        event_name="order.paid",
    )
    message = request(rec, resource={"host.name": "h1", "nested": {"k": [1]}}, scope_name="app")
    message.resource_logs[0].scope_logs[0].scope.version = "1.2"
    metadata = one(message).fields["metadata"]
    assert metadata == {
        "attributes": {"http.status": 500, "ratio": 0.5, "tags": ["a", "b"]},
        "resource": {"host.name": "h1", "nested": {"k": [1]}, "service.name": "checkout"},
        "scope": {"name": "app", "version": "1.2"},
        "event_name": "order.paid",
    }


def test_zero_or_empty_trace_context_is_absent() -> None:
    fields = one(request(record(trace_id=bytes(16), span_id=b""))).fields
    assert "trace_id" not in fields and "span_id" not in fields


def test_trace_context_of_the_wrong_length_is_refused() -> None:
    body = request(record(trace_id=b"\x01" * 5)).SerializeToString()
    [item] = otlp.decode(body, Encoding.PROTOBUF)
    assert item == Refused(0, "invalid_field", "traceId has 5 bytes, not 16")


def test_missing_service_name_is_unknown_service() -> None:
    fields = one(request(record(), service=None)).fields
    assert fields["service_name"] == "unknown_service"
    assert one(request(record(), service="")).fields["service_name"] == "unknown_service"


def test_time_falls_back_to_the_observed_time_and_is_required() -> None:
    observed = one(request(LogRecord(observed_time_unix_nano=NANOS + 1_000)))
    assert observed.fields["timestamp"] == "2025-12-01T00:00:00.123457Z"
    message = request(LogRecord(body=any_value("timeless")), record())
    items = otlp.decode(message.SerializeToString(), Encoding.PROTOBUF)
    assert items[0] == Refused(
        0, "missing_field", "neither timeUnixNano nor observedTimeUnixNano is set"
    )
    assert isinstance(items[1], Candidate) and items[1].index == 1


def test_records_are_numbered_across_resources_and_scopes() -> None:
    message = request(record(body=any_value("a")), record(body=any_value("b")))
    second = message.resource_logs.add()
    second.resource.attributes.append(attr("service.name", "billing"))
    second.scope_logs.add().log_records.append(record(body=any_value("c")))
    second.scope_logs.add().log_records.append(record(body=any_value("d")))
    items = otlp.decode(message.SerializeToString(), Encoding.PROTOBUF)
    assert [(i.index, i.fields["service_name"], i.fields["payload"]) for i in items] == [  # type: ignore[union-attr]
        (0, "checkout", "a"),
        (1, "checkout", "b"),
        (2, "billing", "c"),
        (3, "billing", "d"),
    ]


def test_the_edge_refuses_what_lms_mon_would() -> None:
    items = otlp.decode(
        request(record(body=any_value("x" * 3000)), record()).SerializeToString(),
        Encoding.PROTOBUF,
    )
    accepted, refused = check(items)
    assert [a.index for a in accepted] == [1]
    assert [(r.index, r.reason) for r in refused] == [(0, "invalid_field")]
    assert "2048" in refused[0].detail


# --- keys ----------------------------------------------------------------------------------


def test_the_key_is_stable_across_identical_records_and_requests() -> None:
    first = one(request(record(attributes=[attr("a", 1), attr("b", 2)])))
    again = one(request(record(attributes=[attr("a", 1), attr("b", 2)])))
    assert first.key == again.key
    assert first.key is not None and first.key.startswith("otlp:") and len(first.key) == 69


@pytest.mark.parametrize(
    "change",
    [
        {"time_unix_nano": NANOS + 1},  # same microsecond, other nanosecond
        {"body": any_value("hello!")},
        {"severity_number": 17},
        {"trace_id": TRACE},
        {"span_id": SPAN},
        {"attributes": [attr("a", 1)]},
        {"event_name": "e"},
    ],
)
def test_the_key_changes_with_any_record_field(change: dict[str, object]) -> None:
    assert one(request(record(**change))).key != one(request(record())).key


def test_the_key_changes_with_the_resource_and_scope() -> None:
    base = one(request(record())).key
    assert one(request(record(), service="billing")).key != base
    assert one(request(record(), resource={"host.name": "h2"})).key != base
    assert one(request(record(), scope_name="other")).key != base


# --- OTLP/JSON -----------------------------------------------------------------------------


def as_json(message: ExportLogsServiceRequest) -> dict:
    """OTLP/JSON as the spec writes it: hex ids, not the proto3 mapping's base64."""
    document = json_format.MessageToDict(message)
    for resource in document.get("resourceLogs", []):
        for scope in resource.get("scopeLogs", []):
            for rec in scope.get("logRecords", []):
                for name in ("traceId", "spanId"):
                    if name in rec:
                        rec[name] = base64.b64decode(rec[name]).hex().upper()
    return document


def test_json_reads_hex_ids_and_camel_case_like_protobuf() -> None:
    message = request(
        record(trace_id=TRACE, span_id=SPAN, severity_number=21, attributes=[attr("n", 7)])
    )
    document = as_json(message)
    rec = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert rec["traceId"] == "5B8EFFF798038103D269B633813FC60C"
    assert rec["timeUnixNano"] == str(NANOS)
    rec["someFutureField"] = {"ignored": True}
    [from_json] = otlp.decode(json.dumps(document).encode(), Encoding.JSON)
    assert from_json == one(message)


def test_json_with_a_non_hex_id_is_a_bad_request() -> None:
    document = as_json(request(record(trace_id=TRACE)))
    document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["traceId"] = "not-hex"
    with pytest.raises(BadRequest, match=r"logRecords\[0\]\.traceId must be a hex string"):
        otlp.decode(json.dumps(document).encode(), Encoding.JSON)


@pytest.mark.parametrize(
    ("body", "encoding", "match"),
    [
        (b"\xff\xff\xff", Encoding.PROTOBUF, "not a protobuf"),
        (b"{not json", Encoding.JSON, "not valid JSON"),
        (b"[1, 2]", Encoding.JSON, "must be a JSON object"),
        (b'{"resourceLogs": 7}', Encoding.JSON, "not an OTLP/JSON"),
        (b'{"resourceLogs": [], "resourceLogs": []}', Encoding.JSON, "'resourceLogs' appears"),
    ],
)
def test_undecodable_bodies_are_bad_requests(body: bytes, encoding: Encoding, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        otlp.decode(body, encoding)


def test_an_empty_body_is_an_empty_request() -> None:
    assert otlp.decode(b"", Encoding.PROTOBUF) == []
    assert otlp.decode(b"{}", Encoding.JSON) == []


def test_too_many_records_is_payload_too_large() -> None:
    body = request(record(), record(), record()).SerializeToString()
    assert len(otlp.decode(body, Encoding.PROTOBUF, max_records=3)) == 3
    with pytest.raises(PayloadTooLarge, match="3 log records, at most 2"):
        otlp.decode(body, Encoding.PROTOBUF, max_records=2)


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("application/x-protobuf", Encoding.PROTOBUF),
        ("application/json; charset=utf-8", Encoding.JSON),
        ("Application/JSON", Encoding.JSON),
        ("text/plain", None),
        (None, None),
    ],
)
def test_encoding_of_the_content_type(content_type: str | None, encoding: Encoding | None) -> None:
    assert otlp.encoding_of(content_type) is encoding


# --- answers -------------------------------------------------------------------------------


def test_full_success_is_an_empty_response_in_both_encodings() -> None:
    assert otlp.success_body(3, [], Encoding.PROTOBUF) == b""
    assert json.loads(otlp.success_body(3, [], Encoding.JSON)) == {}


def test_partial_success_counts_and_explains_the_refused_records() -> None:
    refused = [Refused(i, "invalid_field", f"problem {i}") for i in range(12)]
    response = ExportLogsServiceResponse.FromString(
        otlp.success_body(20, refused, Encoding.PROTOBUF)
    )
    assert response.partial_success.rejected_log_records == 12
    message = response.partial_success.error_message
    assert message.startswith("12 of 20 log records rejected: record 0: invalid_field: problem 0;")
    assert "record 9:" in message and "record 10:" not in message
    assert message.endswith("; and 2 more")
    document = json.loads(otlp.success_body(20, refused[:1], Encoding.JSON))
    assert document["partialSuccess"]["rejectedLogRecords"] == "1"


def test_errors_are_a_google_rpc_status_in_the_request_encoding() -> None:
    status = status_pb2.Status.FromString(otlp.error_body(BadRequest("garbled"), Encoding.PROTOBUF))
    assert status.code == code_pb2.INVALID_ARGUMENT and status.message == "garbled"
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad) and bad.field_violations[0].description == "garbled"
    busy = json.loads(otlp.error_body(PublishUnavailable("slow", retry_after=1.0), Encoding.JSON))
    assert busy["code"] == code_pb2.UNAVAILABLE and busy["message"] == "slow"
    assert busy["details"][0]["@type"].endswith("google.rpc.RetryInfo")
    assert busy["details"][0]["retryDelay"] == "1s"


# --- the router, with a stand-in publisher -------------------------------------------------


class StubPublisher:
    """Raises what it is given instead of publishing, or records what it would publish."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.published: list[Accepted] = []

    async def publish(self, logs: list[Accepted]) -> list[str]:
        if self.error is not None:
            raise self.error
        self.published.extend(logs)
        return [str(n) for n in range(len(logs))]


async def post(
    publisher: StubPublisher, content: bytes, limits: dict[str, int] | None = None, **headers: str
) -> httpx.Response:
    app = ingest_app(publisher, **(limits or {}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/otlp/v1/logs", content=content, headers=headers)


PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Overloaded("full", retry_after=1.0), 429, code_pb2.RESOURCE_EXHAUSTED),
        (PublishUnavailable("silent", retry_after=0.2), 503, code_pb2.UNAVAILABLE),
    ],
)
async def test_publisher_refusals_are_retryable_answers_with_retry_after(
    error: Exception, status: int, code: int
) -> None:
    answer = await post(StubPublisher(error), request(record()).SerializeToString(), **PROTOBUF)
    assert answer.status_code == status and answer.headers["retry-after"] == "1"
    assert status_pb2.Status.FromString(answer.content).code == code


async def test_gzip_bodies_are_read_and_bombs_refused() -> None:
    publisher = StubPublisher()
    body = request(record(), record()).SerializeToString()
    answer = await post(publisher, gzip.compress(body), **PROTOBUF, **{"Content-Encoding": "gzip"})
    assert answer.status_code == 200 and len(publisher.published) == 2
    bomb = gzip.compress(b"\0" * 100_000)
    assert len(bomb) < 1000
    limits = {"ingest_max_decoded_bytes": 10_000}
    refused = await post(publisher, bomb, limits, **PROTOBUF, **{"Content-Encoding": "gzip"})
    assert refused.status_code == 413
    unknown = await post(publisher, body, **PROTOBUF, **{"Content-Encoding": "br"})
    assert unknown.status_code == 415


async def test_a_body_with_no_valid_record_is_still_a_200_partial_success() -> None:
    publisher = StubPublisher()
    timeless = request(LogRecord(body=any_value("a")), LogRecord(body=any_value("b")))
    answer = await post(publisher, timeless.SerializeToString(), **PROTOBUF)
    assert answer.status_code == 200 and publisher.published == []
    partial = ExportLogsServiceResponse.FromString(answer.content).partial_success
    assert partial.rejected_log_records == 2
