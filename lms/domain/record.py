"""What a log message is, and why a message is not one.

Parsing never raises: every Pub/Sub message becomes either a `LogRecord` (stored in
`service_logs`) or a `Rejection` (stored in `rejected_messages`), so nothing is ever dropped
silently and a poison message cannot loop.
"""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeGuard

from lms.domain import strictjson
from lms.domain.identifiers import identifier_problem
from lms.domain.severity import SEVERITIES, Severity
from lms.domain.timefmt import parse_timestamp

MAX_SERVICE_NAME = 100
MAX_PAYLOAD = 2048
MAX_CONTEXT = 255
"""Characters of `resource_id`, `trace_id`, `span_id`, `commit` and metadata.parentResourceId."""
MAX_SEQ = 10**18 - 1
"""Largest metadata.seq: 18 digits, what sql/008 casts to its BIGINT column."""
MIN_USER_ID = -(2**63)
MAX_USER_ID = 2**64 - 1
"""An integer metadata.user_id fits 64 bits (signed or unsigned), as JSON integers do in MySQL."""
MAX_METADATA = 16_384
"""Characters of `metadata` once stored as compact JSON."""
MAX_METADATA_DEPTH = 20
"""Nesting of `metadata` (the object itself is 1); MariaDB's json_valid stops at 32."""

DEFAULT_MAX_FUTURE_SKEW = 600.0
"""Seconds a timestamp may be ahead of this host's clock (MAX_FUTURE_SKEW): Loki's own
default grace (`creation_grace_period`, 10 minutes), so what a Loki accepts LMS accepts too.
It absorbs a drifting producer clock and the clock difference between the `lms api` host
that checks a log and the `lms mon` host that checks it again; a log from a clock hours or
years ahead would otherwise sit on top of every newest-first page until then."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Rules:
    """What the rules take from configuration and from time: the grace, in seconds, for
    timestamps ahead of `clock` (seconds since the Unix epoch, time.time; injected by tests).

    Epoch seconds rather than a datetime: time.time() and a subtraction cost a fraction of
    datetime.now(UTC).replace(tzinfo=None) on the hot path, which reads the clock per message.
    """

    max_future_skew: float = DEFAULT_MAX_FUTURE_SKEW
    clock: Callable[[], float] = time.time


DEFAULT_RULES = Rules()


class Reason(enum.StrEnum):
    """Why a message was rejected; a short, fixed set so it can label a metric."""

    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One valid log, ready for `service_logs`; `timestamp` is naive UTC for DATETIME(6)."""

    service_name: str
    payload: str
    severity: str
    timestamp: datetime
    resource_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    commit: str | None = None
    metadata: str | None = None
    """The `metadata` object as compact JSON text, exactly what the JSON column stores."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that is not a valid log: `reason` for metrics, `detail` for humans."""

    reason: Reason
    detail: str


class _Invalid(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


def parse_message(data: bytes, rules: Rules = DEFAULT_RULES) -> LogRecord | Rejection:
    """Turn a message body into a log record or the reason it is not one."""
    try:
        return _parse(data, rules)
    except _Invalid as invalid:
        return invalid.rejection


def parse_object(obj: object, rules: Rules = DEFAULT_RULES) -> LogRecord | Rejection:
    """The same rules for a JSON value already decoded, e.g. by an HTTP ingestion endpoint,
    so the edge refuses exactly what `lms mon` would reject. The decoder must have refused
    duplicate keys itself (lms.domain.strictjson), as `parse_message` does."""
    try:
        return _fields(obj, rules)
    except _Invalid as invalid:
        return invalid.rejection


def _parse(data: bytes, rules: Rules) -> LogRecord:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Invalid(Reason.INVALID_UTF8, f"not valid UTF-8 at byte {exc.start}") from None
    try:
        obj = strictjson.loads(text)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError is a ValueError; so are an integer of more than 4300 digits and a
        # key given twice (strictjson.DuplicateKeyError).
        detail = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _Invalid(Reason.INVALID_JSON, f"not valid JSON: {detail}") from None
    return _fields(obj, rules)


def _fields(obj: object, rules: Rules) -> LogRecord:
    if not isinstance(obj, dict):
        raise _Invalid(Reason.NOT_AN_OBJECT, f"JSON {type(obj).__name__} is not an object")
    resource_id = _context_field(obj, "resource_id", "resourceId")
    if obj.get("service_name") is None and resource_id is not None:
        if len(resource_id) > MAX_SERVICE_NAME:
            raise _Invalid(
                Reason.INVALID_FIELD,
                f"field 'service_name' is missing and resource_id, its fallback, has"
                f" {len(resource_id)} characters, allowed 1..{MAX_SERVICE_NAME}",
            )
        service_name = resource_id
    else:
        service_name = _text_field(obj, "service_name", 1, MAX_SERVICE_NAME)
        _identifier("service_name", service_name)
    payload = _text_field(obj, _spelling(obj, "payload", "message"), 0, MAX_PAYLOAD)
    severity_name = _spelling(obj, "severity", "level")
    if severity_name == "level":  # other loggers' spelling: LEVEL, warning, critical
        severity = _text_field(obj, "level", 1, 8)
        severity = _LEVELS.get(severity.lower(), severity)
    else:
        severity = _text_field(obj, "severity", 1, 5)
    if severity not in SEVERITIES:
        raise _Invalid(
            Reason.INVALID_FIELD,
            f"{severity_name} {severity!r} is not one of {', '.join(s.value for s in Severity)}",
        )
    raw_timestamp = _text_field(obj, "timestamp", 1, 64)
    try:
        timestamp = parse_timestamp(raw_timestamp)
    except ValueError as exc:
        raise _Invalid(Reason.INVALID_FIELD, f"timestamp {raw_timestamp!r}: {exc}") from None
    _not_too_far_ahead(raw_timestamp, timestamp, rules)
    return LogRecord(
        service_name,
        payload,
        severity,
        timestamp,
        resource_id,
        _context_field(obj, "trace_id", "traceId"),
        _context_field(obj, "span_id", "spanId"),
        _context_field(obj, "commit", None),
        _metadata(obj.get("metadata")),
    )


_ALIASES = {"severity": "level", "payload": "message"}
_LEVELS = {s.value: s.value for s in Severity} | {"warning": "warn", "critical": "fatal"}


def _spelling(obj: dict[str, object], name: str, alias: str) -> str:
    """Which key holds the field: `name`, unless it is absent or null and `alias` is set."""
    if obj.get(name) is None and obj.get(alias) is not None:
        return alias
    return name


def _text_field(obj: dict[str, object], name: str, min_len: int, max_len: int) -> str:
    if name not in obj or obj[name] is None:
        alias = _ALIASES.get(name)
        also = f" (or {alias!r})" if alias else ""
        raise _Invalid(Reason.MISSING_FIELD, f"field {name!r}{also} is missing")
    value = obj[name]
    if not isinstance(value, str):
        raise _Invalid(
            Reason.INVALID_FIELD, f"field {name!r} must be a string, not {type(value).__name__}"
        )
    if not min_len <= len(value) <= max_len:
        raise _Invalid(
            Reason.INVALID_FIELD,
            f"field {name!r} has {len(value)} characters, allowed {min_len}..{max_len}",
        )
    _no_surrogates(name, value)
    return value


def _context_field(obj: dict[str, object], name: str, camel: str | None) -> str | None:
    """An optional context string: absent, null or "" is None; otherwise 1..255 characters."""
    value = obj.get(name)
    if (value is None or value == "") and camel is not None:
        value = obj.get(camel)
        if value is not None:
            name = camel
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Invalid(
            Reason.INVALID_FIELD, f"field {name!r} must be a string, not {type(value).__name__}"
        )
    if len(value) > MAX_CONTEXT:
        raise _Invalid(
            Reason.INVALID_FIELD,
            f"field {name!r} has {len(value)} characters, allowed at most {MAX_CONTEXT}",
        )
    _no_surrogates(name, value)
    _identifier(name, value)
    return value


def _identifier(name: str, value: str) -> None:
    problem = identifier_problem(value)
    if problem is not None:
        raise _Invalid(Reason.INVALID_FIELD, f"field {name!r} {problem}")


def _not_too_far_ahead(raw: str, timestamp: datetime, rules: Rules) -> None:
    """Exact at the boundary: whole seconds and microseconds are exact in a double here."""
    ahead = (timestamp - _EPOCH).total_seconds() - rules.clock()
    if ahead > rules.max_future_skew:
        raise _Invalid(
            Reason.INVALID_FIELD,
            f"timestamp {raw!r} is {ahead:.0f} s ahead of the server's clock, more than the"
            f" {rules.max_future_skew:g} s allowed (MAX_FUTURE_SKEW)",
        )


_METADATA_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
"""What json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")) uses,
built once: json.dumps with options builds a new encoder on every call."""


def _metadata(value: object) -> str | None:
    """`metadata` as the compact JSON text the JSON column accepts, on MariaDB and MySQL 8."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid(
            Reason.INVALID_FIELD,
            f"field 'metadata' must be a JSON object, not {type(value).__name__}",
        )
    problem = _structure_problem(value, MAX_METADATA_DEPTH)
    if problem:
        raise _Invalid(Reason.INVALID_FIELD, f"field 'metadata' {problem}")
    for key, check in _RESERVED_METADATA.items():
        reserved = value.get(key)
        problem = None if reserved is None else check(reserved)
        if problem:
            raise _Invalid(Reason.INVALID_FIELD, f"metadata.{key} {problem}")
    try:
        text = _METADATA_JSON.encode(value)
    except ValueError:
        raise _Invalid(
            Reason.INVALID_FIELD, "field 'metadata' holds a number too large for JSON (or NaN)"
        ) from None
    if len(text) > MAX_METADATA:
        raise _Invalid(
            Reason.INVALID_FIELD,
            f"field 'metadata' has {len(text)} characters as JSON, allowed at most {MAX_METADATA}",
        )
    _no_surrogates("metadata", text)
    return text


def _is_int(value: object) -> TypeGuard[int]:
    """A JSON integer; bool is an int in Python but `true` in JSON, never a number."""
    return isinstance(value, int) and not isinstance(value, bool)


def _string_problem(value: str, min_len: int, max_len: int) -> str | None:
    """An indexed string is an identifier too: no space at an end (the PAD SPACE collation
    would make `a` and `a ` one value), no control character."""
    if min_len <= len(value) <= max_len:
        return identifier_problem(value)
    allowed = f"{min_len}..{max_len}" if min_len else f"at most {max_len}"
    return f"has {len(value)} characters, allowed {allowed}"


def _parent_resource_problem(value: object) -> str | None:
    """Only a string is indexed (parent_resource_id); other values stay in metadata only."""
    return _string_problem(value, 0, MAX_CONTEXT) if isinstance(value, str) else None


def _user_id_problem(value: object) -> str | None:
    """A string or an integer: the user 42 and the user "42" are one (the user_id column
    holds the digits). 64 bits keep an integer exact in MySQL's binary JSON too."""
    if isinstance(value, str):
        return _string_problem(value, 1, MAX_CONTEXT)
    if _is_int(value):
        in_range = MIN_USER_ID <= value <= MAX_USER_ID
        return None if in_range else "is an integer beyond 64 bits (-2^63..2^64-1)"
    return f"must be a string or an integer, not {_json_type(value)}"


def _instance_problem(value: object) -> str | None:
    if isinstance(value, str):
        return _string_problem(value, 0, MAX_CONTEXT)
    return f"must be a string, not {_json_type(value)}"


def _seq_problem(value: object) -> str | None:
    if not _is_int(value):
        return f"must be an integer, not {_json_type(value)}"
    return None if 0 <= value <= MAX_SEQ else f"must be in 0..{MAX_SEQ} (10^18 - 1)"


_JSON_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number with a fraction",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, so a detail speaks the sender's terms."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


_RESERVED_METADATA: dict[str, Callable[[object], str | None]] = {
    "parentResourceId": _parent_resource_problem,
    "user_id": _user_id_problem,
    "instance": _instance_problem,
    "seq": _seq_problem,
}
"""The metadata keys the schema takes out into indexed columns, and what each may hold
(a problem in words, or None); null counts as absent. See sql/002 and sql/008."""


def _structure_problem(value: object, max_depth: int) -> str | None:
    """What the database's JSON would refuse: deep nesting, or an integer beyond a double.

    Breadth-first and iterative, so a hostile document cannot exhaust the stack.
    """
    level: list[object] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return f"is nested more than {max_depth} levels deep"
        children: list[object] = []
        for item in level:
            values = (
                item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
            )
            for child in values:
                if isinstance(child, dict | list):
                    children.append(child)
                elif type(child) is int and not -_MAX_JSON_INT < child < _MAX_JSON_INT:
                    return "holds an integer too large for the database (beyond a double)"
        level = children
    return None


_MAX_JSON_INT = 10**300


def _no_surrogates(name: str, value: str) -> None:
    """A JSON-escaped lone surrogate (\\ud800) decodes fine but cannot be stored as utf8mb4.

    str.isascii() is O(1) in CPython (a flag of the string), so the usual ASCII text skips
    the scan.
    """
    if not value.isascii() and _SURROGATE.search(value) is not None:
        raise _Invalid(
            Reason.INVALID_FIELD, f"field {name!r} contains a lone UTF-16 surrogate escape"
        )
