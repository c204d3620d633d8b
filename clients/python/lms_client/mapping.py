"""A `logging.LogRecord` as an LMS log (the README's field mapping table).

- `severity`: DEBUG/INFO/WARNING/ERROR/CRITICAL -> debug/info/warn/error/fatal, any other
  level to the nearest of them (a tie to the more severe: it is the safer mistake);
- `payload`: the formatted message, with the traceback and stack when the record has them (the
  standard Formatter appends them), cut to MAX_PAYLOAD characters with a marker in the middle,
  so both the message and the traceback's last line (the exception) survive;
- `timestamp`: `record.created` in microseconds, RFC 3339 UTC;
- `metadata`: the `extra=` fields, JSON-safe, and `logger`, the logger's name;
- `trace_id`/`span_id`: the active OpenTelemetry span's, when opentelemetry is installed.

Nothing here raises for anything a record may hold: a log that LMS would refuse is made
acceptable (cut, replaced by a string) instead, and a message that cannot be formatted is sent
as its raw parts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from lms_client.jsonsafe import JSONValue, json_safe, short_repr
from lms_client.limits import MAX_JSON_INT, MAX_METADATA, MAX_PAYLOAD, has_surrogates

try:  # optional: only to read the active span
    from opentelemetry.trace import Span, get_current_span

    _current_span: Callable[[], Span] | None = get_current_span
except ImportError:  # pragma: no cover - opentelemetry is installed in the tests
    _current_span = None

STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",  # set by Formatter.format
    "asctime",  # set by Formatter.format when the format uses it
    "taskName",  # Python 3.12+
}
"""The attributes every LogRecord has: whatever else a record holds came from `extra=`."""

_LEVELS = ((10, "debug"), (20, "info"), (30, "warn"), (40, "error"), (50, "fatal"))
_EXACT = dict(_LEVELS)
TRUNCATED_KEYS = "lms_truncated_keys"
"""The metadata key listing the `extra=` fields left out to keep within MAX_METADATA."""


def severity_of(levelno: int) -> str:
    """The LMS severity of a logging level: exact for the five standard ones, else nearest."""
    exact = _EXACT.get(levelno)
    if exact is not None:
        return exact
    return min(_LEVELS, key=lambda level: (abs(levelno - level[0]), -level[0]))[1]


_second: tuple[int, str] = (-1, "")
"""The last second formatted, and its text up to the fraction: logs come many a second."""


def timestamp_of(created: float) -> str:
    """`created` (seconds since the epoch) as RFC 3339 UTC with microseconds."""
    return timestamp_us_text(round(created * 1_000_000))


def timestamp_us_text(microseconds: int) -> str:
    """`microseconds` since the epoch as RFC 3339 UTC with microseconds. Any thread: the
    cache is one tuple, replaced whole."""
    global _second
    seconds, micros = divmod(microseconds, 1_000_000)
    cached, text = _second
    if cached != seconds:
        t = time.gmtime(seconds)
        text = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
        )
        _second = (seconds, text)
    return f"{text}{micros:06d}Z"


def truncate(text: str, limit: int = MAX_PAYLOAD) -> str:
    """`text` within `limit` characters: its head and its tail around a marker saying how
    many characters were cut."""
    if len(text) <= limit:
        return text
    marker = ""
    for _ in range(3):  # the marker's own length changes the count by a digit at most
        cut = len(text) - (limit - len(marker))
        marker = f"\n[... {cut} characters cut ...]\n"
    keep = limit - len(marker)
    tail = keep // 2
    return text[: keep - tail] + marker + text[len(text) - tail :]


def unformattable(record: logging.LogRecord, error: Exception) -> str:
    """The payload of a record whose message cannot be formatted (`log.info("%d", "x")`):
    its raw parts and why, rather than losing it."""
    text = (
        f"{short_repr(record.msg)} % {short_repr(record.args)}"
        f" (the message could not be formatted: {type(error).__name__}: {error})"
    )
    if record.exc_info:
        with contextlib.suppress(Exception):  # a traceback that cannot be printed is left out
            text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


def trace_context() -> tuple[str, str] | None:
    """The trace and span ids (lowercase hex) of the active OpenTelemetry span, if any."""
    if _current_span is None:
        return None
    context = _current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def extras_of(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record; names starting with `_` are private to a library
    (structlog's ProcessorFormatter sets some) and left out."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in STANDARD_ATTRIBUTES and not key.startswith("_")
    }


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
"""Made once: json.dumps with arguments builds an encoder per call, a third of emit's time."""


def dumps(value: object) -> str:
    """Compact JSON with non-ASCII kept: what LMS measures its limits in."""
    return _ENCODER.encode(value)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def plain_json(document: Mapping[str, object], metadata: Mapping[str, object]) -> str | None:
    """`document` as JSON when `metadata` (part of it) is the usual `extra=`: strings,
    numbers, booleans, flat or in objects of them one level down (the request-logging
    middleware's `http`), within every limit of LMS; None otherwise (json_safe must convert
    it).

    The fast path of emit: one json.dumps for the whole log. NaN raises here, lone
    surrogates and huge integers are looked for, and the length of the whole document bounds
    the metadata's.
    """
    values: list[object] = []
    for value in metadata.values():
        if type(value) is dict:
            values.extend(value.values())
        else:
            values.append(value)
    if not all(type(v) in _PLAIN for v in values):
        return None
    try:
        text = dumps(document)
    except (ValueError, TypeError):
        return None
    if len(text) > MAX_METADATA or has_surrogates(text):
        return None
    if not all(-MAX_JSON_INT < v < MAX_JSON_INT for v in values if type(v) is int):
        return None
    return text


def log_json(fields: Mapping[str, str], metadata: Mapping[str, object]) -> str:
    """A whole log as compact JSON: `fields` (service_name, severity, payload, timestamp, the
    trace context and constants, all strings LMS accepts) and `metadata`, JSON-safe and
    within MAX_METADATA, whatever it holds (see plain_json and metadata_text)."""
    whole = plain_json({**fields, "metadata": metadata}, metadata) if metadata else None
    if whole is not None:
        return whole
    text = dumps(fields)
    meta = metadata_text(metadata)
    if meta is not None:
        text = text[:-1] + ',"metadata":' + meta + "}"
    return text


ITEM_ALLOWANCE = 32
"""Characters a metadata item counts in a capture's estimate beyond its key and string
value: the quotes, colon and comma around them, or a number's digits (a float's repr has at
most 24)."""


def plain_copy(metadata: Mapping[str, object]) -> tuple[dict[str, object], int] | None:
    """A copy of `metadata` that the application cannot change any more, and its estimated
    characters as JSON (see ITEM_ALLOWANCE), when it is the usual `extra=`: str keys and
    values of the immutable types str, int, float, bool and None (exactly these, not
    subclasses), flat or in dicts of them one level down (copied too); None otherwise (the
    log is then converted, json_safe, and encoded at once).

    What emit and submit hold until the sending thread encodes the log (log_json): only
    values that nothing can change, and no more than its strings.
    """
    copy: dict[str, object] = {}
    chars = 0
    for key, value in metadata.items():
        if type(key) is not str:
            return None
        kind = type(value)
        if kind is str:
            chars += len(value)  # type: ignore[arg-type]
        elif kind is dict:
            inner: dict[str, object] = {}
            for k, v in value.items():  # type: ignore[attr-defined]
                if type(k) is not str or type(v) not in _PLAIN:
                    return None
                if type(v) is str:
                    chars += len(v)
                chars += len(k) + ITEM_ALLOWANCE
                inner[k] = v
            value = inner
        elif kind not in _PLAIN:
            return None
        chars += len(key) + ITEM_ALLOWANCE
        copy[key] = value
    return copy, chars


def metadata_text(fields: Mapping[str, object]) -> str | None:
    """`fields` as the compact JSON of a `metadata` object within MAX_METADATA characters.

    Fields that do not fit are left out, in order, and named under TRUNCATED_KEYS: the log
    still arrives, and says what it lost.
    """
    if not fields:
        return None
    text = plain_json(fields, fields)
    if text is not None:
        return text
    safe = json_safe(dict(fields))
    assert isinstance(safe, dict)
    text = dumps(safe)
    if len(text) <= MAX_METADATA:
        return text
    kept: dict[str, JSONValue] = {}
    left_out: list[str] = []
    room = MAX_METADATA - 2 - 1200  # braces, and the list of what was left out
    for key, value in safe.items():
        size = len(dumps({key: value})) - 1  # `"key":value` and a comma
        if size <= room:
            kept[key] = value
            room -= size
        else:
            left_out.append(key[:100])
    kept[TRUNCATED_KEYS] = list[JSONValue](left_out[:10])
    return dumps(kept)
