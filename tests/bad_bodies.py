"""A corpus of bad HTTP request bodies for every ingestion endpoint of `lms api`, each with the
answer it must get: a 4xx whose body names what is wrong, never a 500.

Each endpoint has a valid body of one log in its own format (`GOOD`); most cases are a defect
applied to that body, so a case fails for the one reason it is about and not because the
body is otherwise foreign to the protocol. Used twice: in-process by tests/test_bad_bodies.py
(fast, in the default suite) and against a real `lms api` child, with a 100 MB body, a
slowloris, a good client beside them and its memory sampled, by tests/test_faults.py
(scenario 10).
"""

from __future__ import annotations

import functools
import gzip
import json
import random
from dataclasses import dataclass, field

import cramjam

from lms.ingest.http import logproto

NATIVE, OTLP, LOKI, BULK = "/v1/logs", "/otlp/v1/logs", "/loki/api/v1/push", "/_bulk"
ENDPOINTS = (NATIVE, OTLP, LOKI, BULK)
JSON_TYPE = {"Content-Type": "application/json"}
PROTOBUF_TYPE = {"Content-Type": "application/x-protobuf"}
NDJSON_TYPE = {"Content-Type": "application/x-ndjson"}
GZIP = {"Content-Encoding": "gzip"}
STAMP = "2026-12-01T08:00:00Z"
STAMP_NS = "1764576000000000000"
DEEP = 100_000
"""Nesting depth of the deeply nested bodies: far past any parser's recursion limit."""
BOMB_BYTES = 256 << 20
"""What the gzip bomb inflates to: four times INGEST_MAX_DECODED_BYTES' default."""


def native_log(key: str, payload: str = "hello", service: str = "svc") -> dict[str, str]:
    return {
        "id": key,
        "service_name": service,
        "payload": payload,
        "severity": "info",
        "timestamp": STAMP,
    }


def good_body(endpoint: str, payload: str = "hello") -> tuple[dict[str, str], bytes]:
    """(headers, body) of one valid log in `endpoint`'s JSON form (its NDJSON for bulk)."""
    if endpoint == NATIVE:
        return JSON_TYPE, json.dumps(native_log("good-1", payload)).encode()
    if endpoint == OTLP:
        record = {"timeUnixNano": STAMP_NS, "severityNumber": 9, "body": {"stringValue": payload}}
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]}
        document = {
            "resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [record]}]}]
        }
        return JSON_TYPE, json.dumps(document).encode()
    if endpoint == LOKI:
        document = {
            "streams": [{"stream": {"service_name": "svc"}, "values": [[STAMP_NS, payload]]}]
        }
        return JSON_TYPE, json.dumps(document).encode()
    action = json.dumps({"index": {"_index": "logs", "_id": "good-1"}})
    document = json.dumps({"message": payload, "@timestamp": STAMP, "service": {"name": "svc"}})
    return NDJSON_TYPE, f"{action}\n{document}\n".encode()


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, encoded by hand: the library refuses to build a
    message nested past its own limit."""
    size, length = len(payload), b""
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return bytes([number << 3 | 2]) + length + payload


def _otlp_protobuf_nested(depth: int) -> bytes:
    """An OTLP export whose record's body is an array nested `depth` deep (protobuf's limit
    is 100): AnyValue.array_value (5) of ArrayValue.values (1), LogRecord.body (5) in
    ScopeLogs.log_records (2) in ResourceLogs.scope_logs (2) in the request (1)."""
    value = _field(1, b"leaf")
    for _ in range(depth):
        value = _field(5, _field(1, value))
    record = _field(5, value)
    return _field(1, _field(2, _field(2, record)))


def _loki_protobuf(labels: str) -> bytes:
    push = logproto.PushRequest()
    stream = push.streams.add()
    stream.labels = labels
    entry = stream.entries.add()
    entry.timestamp.FromNanoseconds(int(STAMP_NS))
    entry.line = "hello"
    return bytes(cramjam.snappy.compress_raw(push.SerializeToString()))


@dataclass(frozen=True)
class Case:
    """One bad request: where it goes, what it sends, the status it must get and a fragment
    of the answer's body that says why (lowercase, matched case-insensitively)."""

    name: str
    endpoint: str
    headers: dict[str, str]
    body: bytes = field(repr=False)
    status: int
    reason: str

    @property
    def id(self) -> str:
        return f"{self.endpoint.strip('/').split('/')[0]}-{self.name}"


def _garbage(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@functools.cache
def bomb() -> bytes:
    """BOMB_BYTES of zeros, gzipped: about 250 KB that inflate a thousand times over."""
    return gzip.compress(bytes(BOMB_BYTES), compresslevel=9)


def _defects(endpoint: str) -> list[Case]:
    """The defects every endpoint must refuse, applied to its good body."""
    headers, good = good_body(endpoint)
    gzipped = gzip.compress(good)
    nested = b"[" * DEEP + b"]" * DEEP
    if endpoint == BULK:
        # The nesting inside the document, after a valid action line.
        action = good.split(b"\n", 1)[0]
        nested = action + b"\n" + b'{"message": ' + b"[" * DEEP + b"]" * DEEP + b"}\n"
    not_json = "json"
    cases = [
        Case(
            "bad-gzip", endpoint, {**headers, **GZIP}, gzipped[:10] + _garbage(64, 1), 400, "gzip"
        ),
        Case("truncated-gzip", endpoint, {**headers, **GZIP}, gzipped[:-8], 400, "truncated"),
        Case("gzip-bomb", endpoint, {**headers, **GZIP}, bomb(), 413, "ingest_max_decoded_bytes"),
        Case("unknown-encoding", endpoint, {**headers, "Content-Encoding": "br"}, good, 415, "br"),
        Case("truncated", endpoint, headers, good[: len(good) // 2], 400, not_json),
        Case("nul-byte", endpoint, headers, good.replace(b"hello", b"hel\x00lo"), 400, "control"),
        Case("bad-utf8", endpoint, headers, good.replace(b"hello", b"hel\xff\xfelo"), 400, "utf-8"),
        Case("deep-nesting", endpoint, headers, nested, 400, "json nested too deeply"),
    ]
    if endpoint == BULK:
        # A bulk item that is not JSON is refused by itself (200, the item 400), as
        # Elasticsearch does; a NUL or bad UTF-8 in a document is such an item.
        cases = [
            case
            if case.name not in ("nul-byte", "bad-utf8", "deep-nesting", "truncated")
            else Case(case.name, BULK, case.headers, case.body, 200, "mapper_parsing_exception")
            for case in cases
        ]
    return cases


def corpus() -> list[Case]:
    """Every case, for every endpoint."""
    cases: list[Case] = []
    for endpoint in ENDPOINTS:
        cases.extend(_defects(endpoint))
    xml = b"<log><message>hello</message></log>"
    cases += [
        # Wrong content types.
        Case("xml", NATIVE, {"Content-Type": "application/xml"}, xml, 400, "not json"),
        Case("text", OTLP, {"Content-Type": "text/plain"}, b"hello", 415, "content-type"),
        Case("text", LOKI, {"Content-Type": "text/plain"}, b"hello", 415, "content-type"),
        Case("xml", BULK, {"Content-Type": "application/xml"}, xml, 400, "parse_exception"),
        Case(
            "form",
            NATIVE,
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"service_name=svc&payload=hello",
            400,
            "not json",
        ),
        # JSON of the wrong shape.
        Case("a-number", NATIVE, JSON_TYPE, b"42", 400, "json log object"),
        Case("a-string", OTLP, JSON_TYPE, b'"logs"', 400, "json object"),
        Case("no-streams", LOKI, JSON_TYPE, b'{"streams": 7}', 400, "streams"),
        Case("no-action", BULK, NDJSON_TYPE, b'{"message": "hello"}\n', 400, "action"),
        # Invalid NDJSON: no line is a log.
        Case("ndjson", NATIVE, NDJSON_TYPE, b"{bad\n\xff\xfe\n[1]\n", 400, "invalid_json"),
        # Invalid protobuf.
        Case("protobuf", NATIVE, PROTOBUF_TYPE, _garbage(300, 2), 400, "not json"),
        Case("protobuf", OTLP, PROTOBUF_TYPE, _garbage(300, 3), 400, "protobuf"),
        Case("protobuf-nested", OTLP, PROTOBUF_TYPE, _otlp_protobuf_nested(200), 400, "protobuf"),
        Case("not-snappy", LOKI, PROTOBUF_TYPE, _garbage(300, 4), 400, "snappy"),
        Case(
            "snappy-not-protobuf",
            LOKI,
            PROTOBUF_TYPE,
            bytes(cramjam.snappy.compress_raw(_garbage(300, 5))),
            400,
            "pushrequest",
        ),
        Case("bad-labels", LOKI, PROTOBUF_TYPE, _loki_protobuf('{service_name="svc'), 400, "label"),
        Case("protobuf", BULK, PROTOBUF_TYPE, _garbage(300, 6), 400, "parse_exception"),
    ]
    return cases
