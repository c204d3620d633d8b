"""Keyset cursors: where a page ended, as an opaque token clients pass back.

Each listing has its own kind of cursor, named by the token's first field (with its version),
so a token of one listing handed to another is refused by name, never read as a place in an
order it does not describe.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from lms.query.errors import QueryError

_LOGS = "1"
"""Version 1 of the newest-first cursor of GET /v1/logs (written before there were kinds)."""
_REQUESTS = "r1"
"""Version 1 of the request-order cursor of GET /v1/users/{user_id}/requests."""
_LISTINGS = {_LOGS: "GET /v1/logs", _REQUESTS: "GET /v1/users/{user_id}/requests"}
MAX_CURSOR = 2048
"""Characters of any cursor: a request cursor holds an instance of up to 255 characters."""
_MICROS = re.compile(r"-?[0-9]{1,18}")  # before 1970 is negative
_UNSIGNED = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of GET /v1/logs ended: the (timestamp, id) of its last row."""

    timestamp: datetime
    id: int

    def encode(self) -> str:
        return _encode(_LOGS, str(_to_micros(self.timestamp)), str(self.id))

    @classmethod
    def decode(cls, text: str) -> Cursor:
        micros, row_id = _decode(text, _LOGS, 2)
        return cls(_from_micros(micros, _LOGS), _unsigned(row_id, _LOGS))


@dataclass(frozen=True, slots=True)
class RequestCursor:
    """Where a page of a user's requests ended: the (timestamp, instance, seq, id) of its
    last row, the order of GET /v1/users/{user_id}/requests."""

    timestamp: datetime
    instance: str
    seq: int
    id: int

    def encode(self) -> str:
        micros = str(_to_micros(self.timestamp))
        return _encode(_REQUESTS, micros, str(self.seq), str(self.id), self.instance)

    @classmethod
    def decode(cls, text: str) -> RequestCursor:
        micros, seq, row_id, instance = _decode(text, _REQUESTS, 4)
        return cls(
            _from_micros(micros, _REQUESTS),
            instance,
            _unsigned(seq, _REQUESTS),
            _unsigned(row_id, _REQUESTS),
        )


def _encode(kind: str, *fields: str) -> str:
    raw = ":".join((kind, *fields)).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(text: str, kind: str, count: int) -> list[str]:
    """The `count` fields of a cursor of `kind` (the last may hold colons), or a QueryError
    that says which listing the token belongs to, if any."""
    invalid = _invalid(kind)
    if not text or len(text) > MAX_CURSOR or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    found, _, rest = raw.partition(":")
    if found != kind and found in _LISTINGS:
        raise QueryError(
            "cursor",
            f"a cursor of {_LISTINGS[found]}, not of {_LISTINGS[kind]}: pass each listing"
            " its own next_cursor",
        )
    fields = rest.split(":", count - 1)
    if found != kind or len(fields) != count:
        raise invalid
    return fields


def _invalid(kind: str) -> QueryError:
    return QueryError("cursor", f"not a cursor returned by {_LISTINGS[kind]} (next_cursor)")


def _unsigned(text: str, kind: str) -> int:
    if not _UNSIGNED.fullmatch(text):
        raise _invalid(kind)
    return int(text)


_EPOCH = datetime(1970, 1, 1)


def _to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(text: str, kind: str) -> datetime:
    invalid = _invalid(kind)
    if not _MICROS.fullmatch(text):
        raise invalid
    try:
        moment = _EPOCH + timedelta(microseconds=int(text))
    except OverflowError:
        raise invalid from None
    if not datetime(1000, 1, 1) <= moment <= datetime(9999, 12, 31, 23, 59, 59, 999_999):
        raise invalid
    return moment


Bound = Cursor
"""The (timestamp, id) of the last row a probe stream reads."""
