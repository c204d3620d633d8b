"""Time buckets by the logs' own timestamp: minute, hour, day or week of a time zone.

Pure, so its calendar rules are tested without a database. A bucket starts at a boundary of
the zone's clock: the minute, the hour, local midnight, or the Monday (ISO week) local
midnight; a day is 23 or 25 hours on a daylight-saving change. The range [since, until)
clips the first and the last bucket: their `start` is the boundary, their counts only what
lies in the range. Everything is naive UTC inside, like every query bound.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lms.query.errors import QueryError, TooManyBuckets

BucketSize = Literal["minute", "hour", "day", "week"]
UNITS: Mapping[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}
DEFAULT_WINDOWS: Mapping[str, timedelta] = {
    "minute": timedelta(hours=1),
    "hour": timedelta(days=1),
    "day": timedelta(days=30),
    "week": timedelta(weeks=26),
}
"""The range when `from` is not given: this much before `to`."""
Grain = Literal["hour", "minute", "second"]
GRAIN_FORMATS: Mapping[str, str] = {
    "hour": "%Y-%m-%d %H:00:00",
    "minute": "%Y-%m-%d %H:%i:00",
    "second": "%Y-%m-%d %H:%i:%s",
}
"""MySQL DATE_FORMAT of the unit a count is grouped by before it is put in its bucket."""
NARROW = "shorten the range (from/to) or use a larger bucket"


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or a QueryError naming `tz`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise QueryError("tz", f"{name!r} is not an IANA time zone, e.g. Europe/Berlin") from None


def _utc(local: datetime) -> datetime:
    return local.astimezone(UTC).replace(tzinfo=None)


def _local_midnight(day: datetime, tz: ZoneInfo) -> datetime:
    """Naive UTC of local midnight of `day`'s date; a midnight a DST gap skips maps to the
    moment the clock jumped (zoneinfo's fold=0 reading), where that day really starts."""
    return _utc(datetime(day.year, day.month, day.day, tzinfo=tz))


@dataclass(frozen=True, slots=True)
class Buckets:
    """The buckets of one answer: `starts` ascending, starts[0] <= since < until."""

    size: BucketSize
    tz: ZoneInfo
    since: datetime
    until: datetime
    starts: tuple[datetime, ...]

    def index(self, moment: datetime) -> int:
        """The bucket of a moment in [since, until), or of a grain unit starting before it
        that holds moments of the first bucket (clamped to it)."""
        return max(bisect_right(self.starts, moment) - 1, 0)

    @property
    def grain(self) -> Grain:
        """The coarsest unit that no bucket boundary inside the range cuts: counts grouped
        by it can be put in buckets whole (the range's own ends are cut by the WHERE)."""
        inner = self.starts[1:]
        if self.size != "minute" and all(s.minute == s.second == s.microsecond == 0 for s in inner):
            return "hour"
        if all(s.second == s.microsecond == 0 for s in inner):
            return "minute"
        return "second"  # a historical offset of seconds (local mean time)

    def start_text(self, i: int) -> str:
        """RFC 3339 of bucket i's start, at the zone's offset of that moment (Z in UTC)."""
        local = self.starts[i].replace(tzinfo=UTC).astimezone(self.tz)
        text = local.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    def previous(self, cap: int) -> Buckets:
        """The as many buckets just before: the range moved back by its number of buckets
        (by the zone's calendar for days and weeks, so today is compared with yesterday
        whatever their lengths)."""
        n = len(self.starts)
        if self.size in ("minute", "hour"):
            shift = UNITS[self.size] * n
            return make_buckets(self.size, self.tz, self.since - shift, self.until - shift, cap)
        back = UNITS[self.size] * n

        def earlier(moment: datetime) -> datetime:
            local = moment.replace(tzinfo=UTC).astimezone(self.tz).replace(tzinfo=None)
            return _utc((local - back).replace(tzinfo=self.tz))

        return make_buckets(self.size, self.tz, earlier(self.since), earlier(self.until), cap)


def bucket_window(
    size: BucketSize, since: datetime | None, until: datetime | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[since, until) with the defaults: `to` now, `from` one DEFAULT_WINDOWS before `to`."""
    if size not in UNITS:
        raise QueryError("bucket", f"must be one of {', '.join(UNITS)}")
    if until is None:
        until = (now or datetime.now(UTC)).replace(tzinfo=None)
    if since is None:
        since = until - DEFAULT_WINDOWS[size]
    if until <= since:
        raise QueryError("to", "must be later than from (the range is [from, to))")
    return since, until


def make_buckets(
    size: BucketSize, tz: ZoneInfo, since: datetime, until: datetime, cap: int
) -> Buckets:
    """The buckets covering [since, until); TooManyBuckets (naming `bucket`) over `cap`."""
    if (until - since) / UNITS[size] > cap + 1:  # refused before any is made
        raise TooManyBuckets("bucket", cap, NARROW)
    local = since.replace(tzinfo=UTC).astimezone(tz)
    starts: list[datetime] = []
    if size in ("minute", "hour"):
        first = local.replace(second=0, microsecond=0)
        if size == "hour":
            first = first.replace(minute=0)
        start = _utc(first)
        while start < until:
            starts.append(start)
            start += UNITS[size]
    else:
        day = local.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
        if size == "week":
            day -= timedelta(days=day.weekday())
        step = UNITS[size]
        while (start := _local_midnight(day, tz)) < until:
            starts.append(start)
            day += step
    if len(starts) > cap:
        raise TooManyBuckets("bucket", cap, NARROW)
    return Buckets(size, tz, since, until, tuple(starts))
