"""Any Python value as a value LMS stores in `metadata`: JSON the database accepts, always.

`extra=` fields are whatever the application passed (datetimes, UUIDs, exceptions, sets,
objects whose `repr` raises, cycles), and logging must not fail because of them, so this
never raises: what JSON has no form for becomes a string.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath

from lms_client.limits import MAX_JSON_INT, MAX_METADATA_DEPTH, clean_text

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]
MAX_REPR = 1000
"""Characters kept of the `repr` of an object JSON has no form for."""


def json_safe(value: object, depth: int = MAX_METADATA_DEPTH - 1) -> JSONValue:
    """`value` as JSON; containers may nest `depth` more levels (deeper ones become their
    repr). The default leaves room for the `metadata` object that holds the value."""
    try:
        return _convert(value, depth, set())
    except Exception as exc:  # a __getattr__, __iter__ or __repr__ that raises
        return f"<{type(value).__name__}: not convertible: {type(exc).__name__}>"


def _convert(value: object, depth: int, seen: set[int]) -> JSONValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, int):
        return int(value) if -MAX_JSON_INT < value < MAX_JSON_INT else str(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return _convert(value.value, depth, seen)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | Decimal | PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, BaseException):
        return clean_text(short_repr(value))
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        container: object = value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        container = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    else:
        return clean_text(short_repr(value))
    if depth <= 0:
        return clean_text(short_repr(value))
    if id(value) in seen:
        return "<cycle>"
    seen.add(id(value))
    try:
        if isinstance(container, Mapping):
            return {_key(k): _convert(v, depth - 1, seen) for k, v in container.items()}
        if isinstance(container, list | tuple):
            return [_convert(v, depth - 1, seen) for v in container]
        assert isinstance(container, set | frozenset)
        return sorted((_convert(v, depth - 1, seen) for v in container), key=repr)
    finally:
        seen.discard(id(value))


def _key(key: object) -> str:
    if isinstance(key, str):
        return clean_text(key)
    converted = json_safe(key, 0)
    return converted if isinstance(converted, str) else str(converted)


def short_repr(value: object) -> str:
    try:
        text = repr(value) if not isinstance(value, BaseException) else _exception(value)
    except Exception:
        return f"<{type(value).__name__}: repr failed>"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def _exception(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
