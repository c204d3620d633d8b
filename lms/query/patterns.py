"""Top patterns: the query of GET /v1/analytics/patterns and `lms patterns`, and its SQL.

Counts are exact over any [since, until): the whole UTC days inside the range come from a day
tier of the pattern rollups (sql/013, by the log's own timestamp), the other whole hours from
an hour tier, and the partial hours at either edge from COUNT(*) over service_logs itself, so
no range is rounded to a rollup's hour. Without a service filter the tiers without service
answer (far fewer rows); with one, the tiers keyed by service first. The trend of the top
patterns in hour buckets reads their hourly rows along an index that leads with the pattern.
Logs stored before version 9 have no pattern and are not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from typing_extensions import TypedDict

from lms.domain.patterns import pattern_hex
from lms.domain.severity import SEVERITY_ORDER
from lms.domain.timefmt import rfc3339
from lms.query.buckets import BUCKET_FORMATS, BUCKET_SPANS, MAX_BUCKETS
from lms.query.errors import QueryError
from lms.query.filters import exact_problem
from lms.query.results import LogEntry, LogJson
from lms.query.sql import Conditions

TrendBucket = Literal["hour", "day"]
TREND_BUCKETS: tuple[TrendBucket, ...] = ("hour", "day")
DEFAULT_PATTERNS = 10
MAX_PATTERNS = 100
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class PatternsQuery:
    """The top `limit` patterns among logs in [since, until) (naive UTC; None: unbounded) of
    `service` and `severities` (any of them), with a trend per `bucket`."""

    since: datetime | None = None
    until: datetime | None = None
    service: str | None = None
    severities: tuple[str, ...] = ()
    bucket: TrendBucket = "hour"
    limit: int = DEFAULT_PATTERNS

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PATTERNS:
            raise QueryError("limit", f"must be 1..{MAX_PATTERNS}, not {self.limit}")
        if self.bucket not in TREND_BUCKETS:
            raise QueryError("bucket", f"must be one of {', '.join(TREND_BUCKETS)}")
        unknown = [s for s in self.severities if s not in SEVERITY_ORDER]
        if unknown:
            raise QueryError(
                "severity", f"{unknown[0]!r} is not one of {', '.join(SEVERITY_ORDER)}"
            )
        problem = None if self.service is None else exact_problem(self.service)
        if problem is not None:
            raise QueryError("service", problem)
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise QueryError("to", "must be later than from (the range is [from, to))")


Source = Literal["rows", "hours", "days"]
"""Where a span is counted: service_logs itself, an hour tier or a day tier of sql/013."""


@dataclass(frozen=True, slots=True)
class Span:
    """A part of the range, counted from `source`: "hours" and "days" bound it on whole UTC
    hours or days (None: unbounded), "rows" anywhere."""

    since: datetime | None
    until: datetime | None
    source: Source


@dataclass(frozen=True, slots=True)
class Tier:
    """A table patterns are counted on: `time` dates its rows (`day`: a DATE), `index` leads
    with the pattern (the trend of the top patterns reads only their rows), `total` counts."""

    table: str
    time: str
    day: bool = False
    index: str | None = None
    total: str = "SUM(`count`)"

    def bound(self, moment: datetime) -> object:
        """A bound of a span as the time column compares it (a DATE: the day)."""
        return moment.date() if self.day else moment


LOG_ROWS = Tier("service_logs", "`timestamp`", total="COUNT(*)")
"""The logs themselves, for the partial hours."""


TIERS: dict[tuple[Source, bool], Tier] = {
    ("hours", False): Tier("pattern_rollup", "hour_start", index="ix_pattern_rollup_pattern"),
    ("days", False): Tier("pattern_rollup_day", "day_start", day=True),
    ("hours", True): Tier(
        "pattern_service_rollup", "hour_start", index="ix_pattern_service_rollup_pattern"
    ),
    ("days", True): Tier("pattern_service_rollup_day", "day_start", day=True),
}
"""The tier of each (source, filtered by service)."""


def spans(since: datetime | None, until: datetime | None) -> list[Span]:
    """[since, until) cut into its whole UTC days (a day tier), the other whole hours (an hour
    tier) and the partial hours at its edges (service_logs), each of those within one hour:
    each log in exactly one span."""
    first, last = _inner(since, until, floor_hour, HOUR)
    if first is not None and last is not None and first >= last:  # no whole hour inside
        if since is not None and until is not None and since < last < until:
            return [Span(since, last, "rows"), Span(last, until, "rows")]  # split at the hour
        return [Span(since, until, "rows")]
    parts = []
    if since is not None and first != since:
        parts.append(Span(since, first, "rows"))
    parts += _hours(first, last)
    if until is not None and last != until:
        parts.append(Span(last, until, "rows"))
    return parts


def _hours(first: datetime | None, last: datetime | None) -> list[Span]:
    """The whole hours [first, last) (at least one) as whole days and the hours around them."""
    days_first, days_last = _inner(first, last, floor_day, DAY)
    if days_first is not None and days_last is not None and days_first >= days_last:
        return [Span(first, last, "hours")]
    parts = []
    if first is not None and days_first != first:
        parts.append(Span(first, days_first, "hours"))
    parts.append(Span(days_first, days_last, "days"))
    if last is not None and days_last != last:
        parts.append(Span(days_last, last, "hours"))
    return parts


def _inner(
    since: datetime | None,
    until: datetime | None,
    floor: Callable[[datetime], datetime],
    step: timedelta,
) -> tuple[datetime | None, datetime | None]:
    """The first and the last boundary of `floor` units inside [since, until)."""
    first = since if since is None or since == floor(since) else floor(since) + step
    return first, until if until is None else floor(until)


def trend_spans(parts: list[Span], bucket: TrendBucket) -> list[Span]:
    """The spans of a trend: in hour buckets a day's count must be split by hour, so whole
    days are read from the hour tier too (one span with the whole hours around them). The
    "rows" spans stay, for `edge_start`."""
    if bucket == "day":
        return parts
    merged: list[Span] = []
    for span in parts:
        source: Source = "rows" if span.source == "rows" else "hours"
        if merged and source == "hours" and merged[-1].source == "hours":
            merged[-1] = Span(merged[-1].since, span.until, source)
        else:
            merged.append(Span(span.since, span.until, source))
    return merged


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return floor_hour(moment).replace(hour=0)


def floor_bucket(moment: datetime, bucket: TrendBucket) -> datetime:
    return floor_hour(moment) if bucket == "hour" else floor_day(moment)


def any_pattern(count: int) -> str:
    """The condition "pattern_id is one of `count` ids", as equalities joined by OR: with an
    IN list mixing ids below and above 2^63 (BIGINT UNSIGNED literals of two types) MariaDB
    10.11 finds no range and scans the whole index (280,000 entries instead of 7,200)."""
    return "(" + " OR ".join(["pattern_id = %s"] * count) + ")"


def span_sql(
    query: PatternsQuery, span: Span, pattern_ids: list[int] | None, by_bucket: bool
) -> tuple[str, list[object]]:
    """Counts per pattern in one span: the totals that rank the patterns, or with
    `by_bucket` (a tier's span) each pattern's counts per trend bucket folded into one text
    (`add_trend`): the pure-Python driver decodes a row in ~20 us, so 7,200 rows of a month's
    hourly trend took ~150 ms where 10 texts take a few. Only `pattern_ids` when given."""
    cond = Conditions()
    index = ""
    if span.source == "rows":
        tier = LOG_ROWS
        cond.add("pattern_id IS NOT NULL")
    else:
        tier = TIERS[(span.source, query.service is not None)]
        if pattern_ids is not None and tier.index is not None:
            index = f" FORCE INDEX ({tier.index})"
    table, time, total, bound = tier.table, tier.time, tier.total, tier.bound
    if query.service is not None:
        cond.add("service_name = %s", query.service)
    if span.since is not None:
        cond.add(f"{time} >= %s", bound(span.since))
    if span.until is not None:
        cond.add(f"{time} < %s", bound(span.until))
    severities = sorted(set(query.severities), key=SEVERITY_ORDER.index)
    if severities:
        cond.add(f"severity IN ({', '.join(['%s'] * len(severities))})", *severities)
    if pattern_ids is not None:
        cond.add(any_pattern(len(pattern_ids)), *pattern_ids)
    source = f"{table}{index}{cond.where()}"
    if not by_bucket:
        return f"SELECT pattern_id, {total} FROM {source} GROUP BY pattern_id", cond.args
    if span.source == "rows":
        raise ValueError("a partial hour's trend is its ranking's counts (edge_start)")
    sql = (
        f"SELECT pattern_id, GROUP_CONCAT(DATE_FORMAT({time}, %s), '=', `count`) FROM {source}"
        " GROUP BY pattern_id"
    )
    return sql, [BUCKET_FORMATS[query.bucket], *cond.args]


def edge_start(span: Span, bucket: TrendBucket) -> datetime:
    """The trend bucket of a "rows" span: it lies within one hour (spans), hence in one
    bucket, so the counts that ranked the patterns are its trend too and service_logs is
    read once, not twice."""
    if span.since is None:
        raise ValueError("a partial hour always has its start")
    return floor_bucket(span.since, bucket)


TREND_TEXT_MAX = 4 << 20
"""group_concat_max_len for the trend rows (MySQL's default is 1,024 bytes): a pattern's text
holds at most a term per bucket and severity, MAX_BUCKETS x 5 x 31 bytes = 1.55 MB; a longer
trend is refused (trend_starts) after the read."""


def add_trend(into: dict[int, Counter[str]], pattern_id: Any, text: Any) -> None:
    """Add one row of a trend statement of `span_sql`: a pattern and its buckets' counts as
    "start=count" terms joined by commas (a bucket may repeat: one term per severity)."""
    counts = into[int(pattern_id)]
    for term in (text.decode() if isinstance(text, bytes) else str(text)).split(","):
        start, _, n = term.partition("=")
        counts[start] += int(n)


class TrendJson(TypedDict):
    start: str
    count: int


class PatternJson(TypedDict):
    """A pattern: its id (16 hex digits), template, exact count, newest example and trend."""

    pattern_id: str
    template: str
    count: int
    example: LogJson | None
    trend: list[TrendJson]


@lru_cache(maxsize=MAX_BUCKETS)
def start_text(start: datetime) -> str:
    """RFC 3339 of a trend bucket's start, cached: the patterns of an answer share their
    buckets, so 10 patterns of a month's hours format 720 starts, not 7,200 (~60 ms)."""
    return rfc3339(start)


@dataclass(slots=True)
class PatternCount:
    pattern_id: int
    template: str
    count: int
    example: LogEntry | None
    trend: list[tuple[datetime, int]] = field(default_factory=list)

    def as_json(self) -> PatternJson:
        return PatternJson(
            pattern_id=pattern_hex(self.pattern_id),
            template=self.template,
            count=self.count,
            example=None if self.example is None else self.example.as_json(),
            trend=[TrendJson(start=start_text(start), count=n) for start, n in self.trend],
        )


def top(totals: Counter[int], limit: int) -> list[int]:
    """The `limit` largest, most frequent first, ties by id (a stable order)."""
    return [pid for pid, _ in sorted(totals.items(), key=lambda item: (-item[1], item[0]))][:limit]


def trend_starts(
    query: PatternsQuery, seen: list[datetime], max_buckets: int | None
) -> list[datetime]:
    """Every bucket start of the range (zeros included, so a chart needs no gap filling);
    an unbounded side ends at the first or last bucket with logs."""
    if query.since is not None:
        start = floor_bucket(query.since, query.bucket)
    elif seen:
        start = min(seen)
    else:
        return []
    if query.until is not None:
        end = query.until
    elif seen:
        end = max(seen) + BUCKET_SPANS[query.bucket]
    else:
        end = start
    step = BUCKET_SPANS[query.bucket]
    count = max(0, -(-(end - start) // step))
    if count > MAX_BUCKETS or (max_buckets is not None and count * query.limit > max_buckets):
        raise QueryError(
            "bucket",
            f"the trend would hold {count} {query.bucket} buckets for each of {query.limit}"
            " patterns, over the cap (API_MAX_BUCKETS); use a larger bucket, a shorter range"
            " or a smaller limit",
        )
    return [start + step * i for i in range(count)]
