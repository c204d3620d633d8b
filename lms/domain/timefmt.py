"""Time formats of LMS: RFC 3339 in, RFC 3339 out, naive UTC inside (MySQL's DATETIME(6))."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (offset required) into naive UTC.

    RFC 3339 only: ISO 8601 variants without an offset are ambiguous about their time zone.
    A leap second (:60) is kept as the last microsecond of its minute.
    """
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError("timestamp must be RFC 3339, e.g. 2024-05-01T12:00:00Z")
    if value[-1] in "Zz" and value[17:19] != "60":
        # The usual timestamp, UTC and no leap second: read without its Z it is naive UTC
        # already, which spares astimezone and replace (two thirds of the time of this
        # function, which every log pays in `lms api` and again in `lms mon`). Anything it
        # refuses goes the general way below, which says why.
        try:
            fast = datetime.fromisoformat(value[:-1])
        except ValueError:
            pass
        else:
            if fast.year >= 1000:
                return fast
    leap = match.group(6) == "60"
    text = value[:17] + "59" + value[19:] if leap else value
    if text[-1] == "z":  # RFC 3339 allows it; Python 3.11's fromisoformat does not
        text = text[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"timestamp is not a valid date/time: {exc}") from None
    if leap:
        parsed = parsed.replace(microsecond=999_999)
    try:
        utc = parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None
    if utc.year < 1000:
        raise ValueError("timestamp is before year 1000, outside MySQL's DATETIME range")
    return utc


def rfc3339(moment: datetime) -> str:
    """A naive UTC datetime as RFC 3339 with microseconds and Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
