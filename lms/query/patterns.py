"""Top patterns: the query of GET /v1/analytics/patterns and `lms patterns`, and its SQL.

Counts are exact over any [since, until): the whole hours inside the range come from the
pattern_counts rollup (sql/009, hourly by the log's own timestamp), and the partial hours at
either edge from COUNT(*) over service_logs itself, so no range is rounded to the rollup's
hour. Logs stored before version 9 have no pattern and are not counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

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


@dataclass(frozen=True, slots=True)
class Span:
    """A part of the range, read from the rollup (`whole`, bounds on hours) or the rows."""

    since: datetime | None
    until: datetime | None
    whole: bool


def spans(since: datetime | None, until: datetime | None) -> list[Span]:
    """[since, until) cut into the whole hours inside (the rollup) and the partial hours at
    its edges (service_logs): each log in exactly one span."""
    first = since if since is None or since == floor_hour(since) else floor_hour(since) + HOUR
    last = until if until is None else floor_hour(until)
    if first is not None and last is not None and first >= last:
        return [Span(since, until, whole=False)]  # within one hour: all from the rows
    parts = []
    if since is not None and first != since:
        parts.append(Span(since, first, whole=False))
    parts.append(Span(first, last, whole=True))
    if until is not None and last != until:
        parts.append(Span(last, until, whole=False))
    return parts


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_bucket(moment: datetime, bucket: TrendBucket) -> datetime:
    hour = floor_hour(moment)
    return hour if bucket == "hour" else hour.replace(hour=0)


def span_sql(
    query: PatternsQuery, span: Span, pattern_ids: list[int] | None, by_bucket: bool
) -> tuple[str, list[object]]:
    """Counts per pattern in one span, per trend bucket too with `by_bucket` (else the
    totals that rank the patterns); only `pattern_ids` when given."""
    time_column = "bucket_start" if span.whole else "`timestamp`"
    cond = Conditions()
    if span.whole:
        table, total = "pattern_counts", "SUM(`count`)"
    else:
        table, total = "service_logs", "COUNT(*)"
        cond.add("pattern_id IS NOT NULL")
    if span.since is not None:
        cond.add(f"{time_column} >= %s", span.since)
    if span.until is not None:
        cond.add(f"{time_column} < %s", span.until)
    if query.service is not None:
        cond.add("service_name = %s", query.service)
    severities = sorted(set(query.severities), key=SEVERITY_ORDER.index)
    if severities:
        cond.add(f"severity IN ({', '.join(['%s'] * len(severities))})", *severities)
    if pattern_ids is not None:
        cond.add(f"pattern_id IN ({', '.join(['%s'] * len(pattern_ids))})", *pattern_ids)
    if not by_bucket:
        sql = f"SELECT pattern_id, {total} FROM {table}{cond.where()} GROUP BY pattern_id"
        return sql, cond.args
    sql = (
        f"SELECT DATE_FORMAT({time_column}, %s) AS b, pattern_id, {total} FROM {table}"
        f"{cond.where()} GROUP BY b, pattern_id"
    )
    return sql, [BUCKET_FORMATS[query.bucket], *cond.args]


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
            trend=[TrendJson(start=rfc3339(start), count=n) for start, n in self.trend],
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
