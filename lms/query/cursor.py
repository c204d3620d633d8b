"""Keyset cursors: where a page ended, as an opaque token clients pass back."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from lms.query.errors import QueryError

_CURSOR_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the (timestamp, id) of its last row. Opaque to clients."""

    timestamp: datetime
    id: int

    def encode(self) -> str:
        micros = _to_micros(self.timestamp)
        raw = f"{_CURSOR_VERSION}:{micros}:{self.id}".encode("ascii")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        invalid = QueryError("cursor", "not a cursor returned by this API (next_cursor)")
        if not text or len(text) > 64 or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            version, micros, row_id = raw.split(":")
            if version != _CURSOR_VERSION or not row_id.isdigit():
                raise invalid
            if not re.fullmatch(r"-?[0-9]{1,18}", micros):  # before 1970 is negative
                raise invalid
            return cls(_from_micros(int(micros)), int(row_id))
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
            raise invalid from None


_EPOCH = datetime(1970, 1, 1)


def _to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> datetime:
    moment = _EPOCH + timedelta(microseconds=micros)
    if not datetime(1000, 1, 1) <= moment <= datetime(9999, 12, 31, 23, 59, 59, 999_999):
        raise ValueError("cursor timestamp out of range")
    return moment


Bound = Cursor
"""The (timestamp, id) of the last row a probe stream reads."""
