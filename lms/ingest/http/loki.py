"""The Loki push API's bodies (`POST /loki/api/v1/push`) as candidate logs, without I/O.

Two forms, told apart by Content-Type as Loki does:

- `application/json`: `{"streams": [{"stream": {labels}, "values": [["<unix ns>", "<line>"],
  ["<unix ns>", "<line>", {structured metadata}], ...]}]}`;
- `application/x-protobuf` (or no Content-Type, Loki's default): a snappy-compressed (block
  format, no framing) `logproto.PushRequest` (lms.ingest.http.logproto), whose stream labels
  are one string in the Prometheus form `{app="x", level="warn"}`. Promtail and Alloy send
  only this form.

Entries are numbered 0, 1, ... in order across all streams; that number is the index of a
`Refused`. A body whose structure is not the push schema (down to each JSON stream's labels) is a
BadRequest as a whole, as Loki refuses what it cannot unmarshal; past that, one protobuf
stream's unparsable label string or one entry's bad timestamp or line refuses only those
entries, so valid lines are never dropped for an invalid neighbour.

Mapping to the native fields (README "Loki push"):

- service_name: the label `service_name`, else `service`, `app`, `job`; with none of them,
  `unknown_service`, Loki's own default for a stream without a service, so a shipper with
  only e.g. `filename` labels still gets its lines stored.
- severity: `level`, `detected_level` or `severity`, looked up first in the entry's structured
  metadata (the more specific) and then in the stream labels, case-insensitively, with other
  loggers' words mapped (trace -> debug, warning -> warn, err -> error, critical/crit/panic/
  emerg/alert -> fatal, notice -> info, ...). No such key, or a value none of these, is `info`
  (an unknown value stays in metadata).
- payload: the line. timestamp: the unix nanoseconds as RFC 3339, truncated to microseconds.
- trace_id / span_id: structured metadata `trace_id` (`traceID`, `traceId`) and `span_id`
  (`spanID`, `spanId`).
- metadata: `{"labels": {...}, "structured_metadata": {...}}` with what the mapping above did
  not use (an empty part is left out; no metadata when both are empty).
- idempotency key: `loki:` + SHA-256 hex of the stream's labels (sorted by name, so their order
  does not matter), the nanosecond timestamp and the line. Loki itself drops an entry with the
  same stream, timestamp and line as a duplicate, so a shipper's retry of a timed-out push
  maps to the same keys, in either form.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import cramjam
from google.protobuf.message import DecodeError

from lms.domain import strictjson
from lms.domain.record import Reason
from lms.domain.severity import Severity
from lms.domain.timefmt import rfc3339
from lms.ingest.http import logproto
from lms.ingest.http.edge import Candidate, Refused
from lms.ingest.http.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    why_not_json,
)

JSON = "application/json"
PROTOBUF = ("application/x-protobuf", "application/protobuf")
MAX_DECODED = 64 << 20
"""Bytes a snappy body may announce once decompressed; past it the body is refused unread."""

SERVICE_LABELS = ("service_name", "service", "app", "job")
DEFAULT_SERVICE = "unknown_service"
SEVERITY_KEYS = ("level", "detected_level", "severity")
DEFAULT_SEVERITY = Severity.INFO
TRACE_KEYS = ("trace_id", "traceID", "traceId")
SPAN_KEYS = ("span_id", "spanID", "spanId")
KEY_PREFIX = "loki:"

_SEVERITIES: dict[str, Severity] = {
    **{word: Severity.DEBUG for word in ("trace", "debug", "dbug", "trc", "dbg")},
    **{word: Severity.INFO for word in ("info", "inf", "information", "informational")},
    "notice": Severity.INFO,
    **{word: Severity.WARN for word in ("warn", "warning", "wrn")},
    **{word: Severity.ERROR for word in ("error", "err", "eror", "erro")},
    **{word: Severity.FATAL for word in ("fatal", "critical", "crit", "panic", "emerg")},
    "emergency": Severity.FATAL,
    "alert": Severity.FATAL,
}
_EPOCH = datetime(1970, 1, 1)
_NANOS = re.compile(r"\d{1,19}")
"""Loki's JSON timestamps: a string of digits (an int64 of nanoseconds), never a number."""


@dataclass(frozen=True, slots=True)
class _Entry:
    ns: int
    line: str
    structured: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Problem:
    """Why one entry (or every entry of a stream) cannot be read."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class _Stream:
    labels: dict[str, str] | _Problem
    entries: list[_Entry | _Problem]


def decode(
    body: bytes, content_type: str | None, max_decoded: int = MAX_DECODED
) -> list[Candidate | Refused]:
    """The entries of a push body, each a Candidate or the reason it is Refused, in order.

    Raises UnsupportedMediaType for a Content-Type that is neither form, BadRequest for a body
    that is not the push schema, PayloadTooLarge for a snappy body announcing more than
    `max_decoded` bytes.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON:
        streams = _json_streams(body)
    elif media in PROTOBUF or not media:
        streams = _protobuf_streams(body, max_decoded)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {media!r}: a Loki push is {JSON} or {PROTOBUF[0]} (snappy)"
        )
    return list(_items(streams))


def _items(streams: list[_Stream]) -> Iterator[Candidate | Refused]:
    index = 0
    for number, stream in enumerate(streams):
        labels = stream.labels
        canonical = _canonical(labels) if isinstance(labels, dict) else ""
        for entry in stream.entries:
            if isinstance(labels, _Problem):
                yield Refused(index, labels.reason.value, f"stream {number}: {labels.detail}")
            elif isinstance(entry, _Problem):
                yield Refused(index, entry.reason.value, f"stream {number}: {entry.detail}")
            else:
                yield _candidate(index, labels, canonical, entry)
            index += 1


def _candidate(index: int, labels: dict[str, str], canonical: str, entry: _Entry) -> Candidate:
    """One entry in the native fields; the edge check (lms.domain.record) judges them."""
    other_labels = dict(labels)
    structured = dict(entry.structured)
    service = _take(other_labels, SERVICE_LABELS) or DEFAULT_SERVICE
    fields: dict[str, Any] = {
        "service_name": service,
        "payload": entry.line,
        "severity": _severity(structured, other_labels),
        "timestamp": _timestamp(entry.ns),
    }
    for name, keys in (("trace_id", TRACE_KEYS), ("span_id", SPAN_KEYS)):
        value = _take(structured, keys)
        if value:
            fields[name] = value
    metadata = {
        part: values
        for part, values in (("labels", other_labels), ("structured_metadata", structured))
        if values
    }
    if metadata:
        fields["metadata"] = metadata
    return Candidate(index, fields, idempotency_key(canonical, entry.ns, entry.line))


def idempotency_key(canonical_labels: str, ns: int, line: str) -> str:
    """`loki:` + SHA-256 of (labels, timestamp, line): what Loki de-duplicates on. The parts
    are joined by newlines, which neither canonical JSON nor a number can contain, so two
    different entries never hash the same text."""
    text = f"{canonical_labels}\n{ns}\n{line}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return KEY_PREFIX + digest


def _canonical(labels: dict[str, str]) -> str:
    return json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))


def _take(values: dict[str, str], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` with a non-empty value, removed from `values` (so it is not also
    stored in metadata)."""
    for key in keys:
        if values.get(key):
            return values.pop(key)
    return None


def _severity(structured: dict[str, str], labels: dict[str, str]) -> str:
    for source in (structured, labels):
        for key in SEVERITY_KEYS:
            mapped = _SEVERITIES.get(source.get(key, "").strip().lower())
            if mapped is not None:
                del source[key]
                return mapped.value
    return DEFAULT_SEVERITY.value


def _timestamp(ns: int) -> str:
    """Unix nanoseconds as RFC 3339; out of range gives a text the edge check refuses."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    try:
        return rfc3339(_EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000))
    except OverflowError:
        return f"{ns} ns (out of range)"


# --- JSON form -----------------------------------------------------------------------------


def _json_streams(body: bytes) -> list[_Stream]:
    try:
        document = strictjson.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"the body is not JSON: {why_not_json(exc)}") from None
    streams = document.get("streams") if isinstance(document, dict) else None
    if not isinstance(streams, list):
        raise BadRequest('a Loki JSON push is an object with a "streams" array')
    parsed: list[_Stream] = []
    for number, stream in enumerate(streams):
        values = stream.get("values") if isinstance(stream, dict) else None
        labels = _string_pairs(stream.get("stream", {})) if isinstance(stream, dict) else None
        if not isinstance(values, list) or labels is None:
            raise BadRequest(
                f'stream {number} must be an object with a "values" array and its labels'
                ' as "stream", an object of strings'
            )
        parsed.append(_Stream(labels, _json_values(values)))
    return parsed


def _string_pairs(value: object) -> dict[str, str] | None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return None
    return dict(value)


def _json_values(values: list[Any]) -> list[_Entry | _Problem]:
    entries: list[_Entry | _Problem] = []
    for value in values:
        if not isinstance(value, list) or len(value) not in (2, 3):
            problem = "a value must be [timestamp, line] or [timestamp, line, {metadata}]"
            entries.append(_Problem(Reason.INVALID_FIELD, problem))
            continue
        stamp, line = value[0], value[1]
        structured = _string_pairs(value[2] if len(value) == 3 else {})
        ns = int(stamp) if isinstance(stamp, str) and _NANOS.fullmatch(stamp) else None
        if ns is None:
            detail = f"timestamp {stamp!r} is not unix nanoseconds (a string of digits)"
            entries.append(_Problem(Reason.INVALID_FIELD, detail))
        elif not isinstance(line, str):
            detail = f"the line must be a string, not {type(line).__name__}"
            entries.append(_Problem(Reason.INVALID_FIELD, detail))
        elif structured is None:
            detail = "structured metadata must be an object of strings"
            entries.append(_Problem(Reason.INVALID_FIELD, detail))
        else:
            entries.append(_Entry(ns, line, structured))
    return entries


# --- protobuf + snappy form ----------------------------------------------------------------


def _protobuf_streams(body: bytes, max_decoded: int) -> list[_Stream]:
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise BadRequest(f"the body is not snappy (block format): {exc}") from None
    if size > max_decoded:
        raise PayloadTooLarge(
            f"the snappy body would decompress to {size} bytes, allowed at most {max_decoded}"
        )
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadRequest(f"the body is not snappy (block format): {exc}") from None
    try:
        request = logproto.PushRequest.FromString(raw)
    except DecodeError as exc:
        raise BadRequest(f"the body is not a logproto.PushRequest: {exc}") from None
    return [
        _Stream(_parsed_labels(stream.labels), [_proto_entry(e) for e in stream.entries])
        for stream in request.streams
    ]


def _parsed_labels(text: str) -> dict[str, str] | _Problem:
    try:
        return parse_labels(text)
    except ValueError as exc:
        return _Problem(Reason.INVALID_FIELD, f"labels {text[:200]!r}: {exc}")


def _proto_entry(entry: Any) -> _Entry | _Problem:
    if not entry.HasField("timestamp"):
        return _Problem(Reason.MISSING_FIELD, "an entry has no timestamp")
    ns = entry.timestamp.seconds * 1_000_000_000 + entry.timestamp.nanos
    structured = {pair.name: pair.value for pair in entry.structuredMetadata}
    return _Entry(ns, entry.line, structured)


# --- the label string ----------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPACE = re.compile(r"\s*")
_PLAIN = re.compile(r'[^"\\]+')
_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_DIGITS = {16: re.compile(r"[0-9A-Fa-f]+"), 8: re.compile(r"[0-7]+")}


def parse_labels(text: str) -> dict[str, str]:
    """A Prometheus/LogQL label set, `{name="value", ...}`, into a dict.

    Values are double-quoted with Go's escapes (`\\"`, `\\\\`, `\\n`, `\\xHH`, `\\uXXXX`,
    octal; byte escapes make UTF-8 together) or back-quoted raw. Raises ValueError naming the
    position of a malformed set, another operator than `=`, or a name given twice.
    """
    labels: dict[str, str] = {}
    pos = _skip(text, 0)
    if not text.startswith("{", pos):
        raise ValueError("a label set starts with '{'")
    pos = _skip(text, pos + 1)
    while not text.startswith("}", pos):
        name = _NAME.match(text, pos)
        if name is None:
            raise ValueError(f"a label name was expected at {pos}")
        pos = _skip(text, name.end())
        if not text.startswith("=", pos) or text.startswith(("==", "=~"), pos):
            raise ValueError(f"'=' was expected after {name.group()!r} at {pos}")
        value, pos = _quoted(text, _skip(text, pos + 1))
        if name.group() in labels:
            raise ValueError(f"label {name.group()!r} is given twice")
        labels[name.group()] = value
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif not text.startswith("}", pos):
            raise ValueError(f"',' or '}}' was expected at {pos}")
    if _skip(text, pos + 1) != len(text):
        raise ValueError(f"nothing may follow the closing '}}' (at {pos})")
    return labels


def _skip(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """The string literal at `pos` and the position after it."""
    if text.startswith("`", pos):
        end = text.find("`", pos + 1)
        if end < 0:
            raise ValueError(f"the value at {pos} has no closing '`'")
        return text[pos + 1 : end], end + 1
    if not text.startswith('"', pos):
        raise ValueError(f"a quoted value was expected at {pos}")
    start = pos
    out = bytearray()
    pos += 1
    while True:
        plain = _PLAIN.match(text, pos)
        if plain is not None:
            out += plain.group().encode("utf-8", "surrogatepass")
            pos = plain.end()
        if pos >= len(text):
            raise ValueError(f"the value at {start} has no closing '\"'")
        if text[pos] == '"':
            break
        pos = _escape(text, pos + 1, out)
    try:
        return out.decode("utf-8"), pos + 1
    except UnicodeDecodeError:
        raise ValueError(f"the value at {start} is not valid UTF-8") from None


def _escape(text: str, pos: int, out: bytearray) -> int:
    """Append the escape after a backslash (at `pos`) to `out`; the position after it."""
    kind = text[pos : pos + 1]
    if kind in _ESCAPES:
        out += _ESCAPES[kind].encode()
        return pos + 1
    digits, base = (_HEX_ESCAPES[kind], 16) if kind in _HEX_ESCAPES else (3, 8)
    first = pos + 1 if kind in _HEX_ESCAPES else pos
    code = text[first : first + digits]
    try:
        if len(code) != digits or not _DIGITS[base].fullmatch(code):
            raise ValueError
        number = int(code, base)
        if kind == "x" or base == 8:
            out.append(number)  # a byte; ValueError past 255, as Go refuses \400
        else:
            out += chr(number).encode("utf-8")
    except ValueError:
        raise ValueError(f"invalid escape at {pos - 1}") from None
    return first + digits
