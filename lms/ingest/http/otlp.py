"""OpenTelemetry OTLP/HTTP logs: an `ExportLogsServiceRequest` body into candidate logs, and
the answers OTLP clients expect. Pure: no I/O, so the router only moves bytes.

Both OTLP/HTTP encodings are read: binary protobuf (`application/x-protobuf`) and OTLP/JSON
(`application/json`). OTLP/JSON is the proto3 JSON mapping with lowerCamelCase names, except
that `traceId`/`spanId` are hex strings, not base64: they are turned into bytes here before
the protobuf JSON parser sees them, since a 32-digit hex string is also valid base64 and would
silently become a wrong 24-byte id. Unknown JSON fields are ignored, as the spec requires.
A body nested deeper than the protobuf runtime allows (100 messages; an AnyValue array level
counts two in JSON) does not decode: 400, like any undecodable body.

Log records are numbered 0, 1, ... in the order they appear across resourceLogs and
scopeLogs, and each becomes a `Candidate` in the native fields (or a `Refused`):

| native field   | from the OTLP log record                                                  |
| -------------- | ------------------------------------------------------------------------- |
| `service_name` | resource attribute `service.name`; absent or "" -> `unknown_service`      |
|                | (the OTel resource convention's own default)                              |
| `severity`     | `severityNumber` 1-8 (TRACE, DEBUG) -> debug, 9-12 -> info, 13-16 -> warn, |
|                | 17-20 -> error, 21-24 -> fatal; else `severityText`, case-insensitive,    |
|                | an optional 1-4 suffix dropped (trace/debug -> debug, info/notice ->      |
|                | info, warn/warning -> warn, error/err -> error, fatal/critical/crit/      |
|                | alert/emergency/panic -> fatal); else info                                |
| `payload`      | `body`: a string as is; any other value (bytes too) as compact JSON;      |
|                | none or empty -> ""                                                       |
| `timestamp`    | `timeUnixNano`, else `observedTimeUnixNano` (RFC 3339, UTC, to the        |
|                | microsecond); neither -> refused (`missing_field`): without a time the    |
|                | idempotency key could not be derived                                      |
| `trace_id`     | `traceId` as lowercase hex (16 bytes); empty or all zero -> absent        |
| `span_id`      | `spanId` as lowercase hex (8 bytes); empty or all zero -> absent          |
| `metadata`     | `{"attributes": {...}, "resource": {...}, "scope": {"name", "version",    |
|                | "attributes"}, "event_name": ...}`, each only when not empty              |

Attribute values (AnyValue) become plain JSON: string, bool, int, double (NaN and infinities
as the strings "NaN", "Infinity", "-Infinity", as the proto3 JSON mapping writes them),
bytes as base64, arrays as lists, key-value lists as objects (a repeated key: the last wins).

The idempotency key (`Candidate.key`) is `otlp:` and the SHA-256 (hex) of the record's
native fields together with its nanosecond timestamp, as canonical JSON (sorted keys,
compact). The fields carry the resource (its attributes are in `metadata`), the body and the
scope, so a retried export yields the same keys and stores nothing twice, while two records
that differ in anything stored (or in their nanoseconds) never share a key.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from lms.domain import strictjson
from lms.domain.record import Reason
from lms.domain.timefmt import rfc3339
from lms.ingest.http.edge import Candidate, Refused
from lms.ingest.http.errors import BadRequest, IngestError, PayloadTooLarge, why_not_json

DEFAULT_SERVICE = "unknown_service"
"""service_name of a record whose resource has no `service.name`."""
KEY_PREFIX = "otlp:"
MAX_LISTED_REASONS = 10
"""Refused records a partial-success `error_message` describes one by one."""
_TRACE_ID_BYTES = 16
_SPAN_ID_BYTES = 8


class Encoding(enum.StrEnum):
    """The two OTLP/HTTP body encodings, by the Content-Type that names them; the answer is
    written in the request's."""

    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"


def encoding_of(content_type: str | None) -> Encoding | None:
    """The encoding a Content-Type names (parameters such as charset ignored), else None."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        return Encoding(media)
    except ValueError:
        return None


# --- request -------------------------------------------------------------------------------


def decode(
    body: bytes, encoding: Encoding, max_records: int | None = None
) -> list[Candidate | Refused]:
    """The log records of an export request, in order; BadRequest if the body is not one,
    PayloadTooLarge if it holds more than `max_records`."""
    request = parse_request(body, encoding)
    count = sum(
        len(scope.log_records)
        for resource in request.resource_logs
        for scope in resource.scope_logs
    )
    if max_records is not None and count > max_records:
        raise PayloadTooLarge(
            f"the export request holds {count} log records, at most {max_records} are accepted"
            " per request; export smaller batches"
        )
    return list(_candidates(request))


def parse_request(body: bytes, encoding: Encoding) -> ExportLogsServiceRequest:
    """The request message; an empty body is an empty request (the spec answers success)."""
    request = ExportLogsServiceRequest()
    if not body.strip():
        return request
    if encoding is Encoding.PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BadRequest(f"not a protobuf ExportLogsServiceRequest: {exc}") from None
        return request
    try:
        document = strictjson.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"not valid JSON: {why_not_json(exc)}") from None
    if not isinstance(document, dict):
        raise BadRequest("an OTLP/JSON ExportLogsServiceRequest must be a JSON object")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as exc:
        raise BadRequest(
            f"not an OTLP/JSON ExportLogsServiceRequest: {why_not_json(exc)}"
        ) from None
    return request


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """Rewrite each log record's hex `traceId`/`spanId` as the base64 the proto3 JSON parser
    reads; BadRequest for one that is not hex."""
    for r, resource in enumerate(_objects(document.get("resourceLogs"))):
        for s, scope in enumerate(_objects(resource.get("scopeLogs"))):
            for n, record in enumerate(_objects(scope.get("logRecords"))):
                for name in ("traceId", "spanId"):
                    value = record.get(name)
                    if not isinstance(value, str):
                        continue  # absent, or wrong enough for ParseDict to name it
                    try:
                        raw = bytes.fromhex(value)
                    except ValueError:
                        where = f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{n}].{name}"
                        raise BadRequest(
                            f"{where} must be a hex string (OTLP/JSON), not {value[:80]!r}"
                        ) from None
                    record[name] = base64.b64encode(raw).decode("ascii")


def _objects(value: object) -> Iterator[dict[str, Any]]:
    """The objects of a JSON list; anything else is left for ParseDict to refuse."""
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _candidates(request: ExportLogsServiceRequest) -> Iterator[Candidate | Refused]:
    index = 0
    for resource_logs in request.resource_logs:
        resource = _attributes(resource_logs.resource.attributes)
        service = resource.get("service.name")
        service_name = DEFAULT_SERVICE if service is None or service == "" else service
        for scope_logs in resource_logs.scope_logs:
            scope = _scope(scope_logs.scope)
            for record in scope_logs.log_records:
                yield _candidate(index, record, service_name, resource, scope)
                index += 1


def _scope(scope: InstrumentationScope) -> dict[str, Any]:
    described = {
        "name": scope.name,
        "version": scope.version,
        "attributes": _attributes(scope.attributes),
    }
    return {key: value for key, value in described.items() if value}


def _candidate(
    index: int,
    record: LogRecord,
    service_name: object,
    resource: dict[str, Any],
    scope: dict[str, Any],
) -> Candidate | Refused:
    nanos = record.time_unix_nano or record.observed_time_unix_nano
    if not nanos:
        return Refused(
            index,
            Reason.MISSING_FIELD.value,
            "neither timeUnixNano nor observedTimeUnixNano is set",
        )
    for name, raw, size in (
        ("traceId", record.trace_id, _TRACE_ID_BYTES),
        ("spanId", record.span_id, _SPAN_ID_BYTES),
    ):
        if raw and any(raw) and len(raw) != size:
            return Refused(
                index, Reason.INVALID_FIELD.value, f"{name} has {len(raw)} bytes, not {size}"
            )
    described = {
        "attributes": _attributes(record.attributes),
        "resource": resource,
        "scope": scope,
        "event_name": record.event_name,
    }
    optional = {
        "trace_id": _hex_id(record.trace_id),
        "span_id": _hex_id(record.span_id),
        "metadata": {key: value for key, value in described.items() if value},
    }
    fields: dict[str, Any] = {
        "service_name": service_name,
        "payload": _payload(record.body),
        "severity": severity_of(record.severity_number, record.severity_text),
        "timestamp": _timestamp(nanos),
        **{key: value for key, value in optional.items() if value},
    }
    return Candidate(index, fields, record_key(fields, nanos))


_BANDS = ("debug", "debug", "info", "warn", "error", "fatal")
"""The severity of each band of four severityNumbers, from 1-4 (TRACE) to 21-24 (FATAL)."""
_TEXTS = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "information": "info",
    "notice": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "err": "error",
    "fatal": "fatal",
    "critical": "fatal",
    "crit": "fatal",
    "alert": "fatal",
    "emergency": "fatal",
    "emerg": "fatal",
    "panic": "fatal",
}
_TEXT = re.compile(r"([a-z]+)[1-4]?")


def severity_of(number: int, text: str) -> str:
    """The severity of a record: its number's band, else its text, else info."""
    if 1 <= number <= 24:
        return _BANDS[(number - 1) // 4]
    match = _TEXT.fullmatch(text.strip().lower())
    if match is not None and match.group(1) in _TEXTS:
        return _TEXTS[match.group(1)]
    return "info"


def _payload(body: AnyValue) -> str:
    """A string body as is; any other kind (bytes too) as compact JSON of its plain value."""
    kind = body.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return body.string_value
    return json.dumps(plain(body), ensure_ascii=False, separators=(",", ":"))


def _timestamp(nanos: int) -> str:
    """Nanoseconds since the epoch as RFC 3339, truncated to the microsecond MySQL keeps."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanos // 1000)
    return rfc3339(moment.replace(tzinfo=None))


def _hex_id(raw: bytes) -> str | None:
    if not raw or not any(raw):
        return None
    return raw.hex()


def plain(value: AnyValue) -> Any:
    """An AnyValue as the JSON value it stands for (None when unset)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        if math.isfinite(number):
            return number
        return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [plain(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None


def _attributes(pairs: Sequence[KeyValue]) -> dict[str, Any]:
    return {pair.key: plain(pair.value) for pair in pairs}


def record_key(fields: dict[str, Any], nanos: int) -> str:
    """The content-derived idempotency key of a record (see the module docstring)."""
    canonical = json.dumps(
        {"fields": fields, "time_unix_nano": nanos},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return KEY_PREFIX + digest


# --- response ------------------------------------------------------------------------------


def success_body(total: int, refused: Sequence[Refused], encoding: Encoding) -> bytes:
    """The ExportLogsServiceResponse: empty on full success; with `partial_success` counting
    the refused records and saying why, in English, otherwise. Both are HTTP 200."""
    response = ExportLogsServiceResponse()
    if refused:
        response.partial_success.rejected_log_records = len(refused)
        response.partial_success.error_message = rejection_summary(total, refused)
    return _serialize(response, encoding)


def rejection_summary(total: int, refused: Sequence[Refused]) -> str:
    """`N of M log records rejected: record i: reason: detail; ...`, the first few listed."""
    listed = "; ".join(
        f"record {item.index}: {item.reason}: {item.detail}"
        for item in refused[:MAX_LISTED_REASONS]
    )
    more = len(refused) - MAX_LISTED_REASONS
    tail = f"; and {more} more" if more > 0 else ""
    return f"{len(refused)} of {total} log records rejected: {listed}{tail}"


_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.UNIMPLEMENTED,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def error_body(error: IngestError, encoding: Encoding) -> bytes:
    """The `google.rpc.Status` OTLP/HTTP wants as the body of every 4xx and 5xx: a 400 carries
    a BadRequest detail, a 429/503 a RetryInfo with the wait its Retry-After header gives."""
    status = status_pb2.Status(
        code=_CODES.get(error.status, code_pb2.UNKNOWN), message=error.detail
    )
    if error.status == 400:
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field="body", description=error.detail)
        status.details.add().Pack(bad)
    if error.retry_after is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromMilliseconds(math.ceil(error.retry_after * 1000))
        status.details.add().Pack(info)
    return _serialize(status, encoding)


def _serialize(message: Any, encoding: Encoding) -> bytes:
    if encoding is Encoding.PROTOBUF:
        data: bytes = message.SerializeToString()
        return data
    text: str = json_format.MessageToJson(message, indent=None)
    return text.encode("utf-8")
