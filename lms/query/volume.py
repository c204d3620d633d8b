"""Volume and error rate over time, by the logs' own timestamp: exact, and fast on big tables.

Every count is what COUNT(*) over service_logs with the same filters gives. Two sources,
read in one consistent snapshot:

- volume_rollup (sql/010), per (UTC hour, service, severity), when the filters are only
  service, severity and time, and no bucket boundary inside the range cuts an hour (any zone
  with whole-hour offsets). It answers the whole hours of the range; a 30-day range reads
  ~720 x services x severities small index entries instead of millions of rows.
- service_logs itself, COUNT(*) GROUP BY the hour (or minute, when a zone's boundaries cut
  hours, or for minute buckets) over the index of the filters, for every other filter, the
  partial hours at the range's ends, and full-text `q` (exact too, through the FULLTEXT
  index; its time is what such a search costs, bounded by API_QUERY_TIMEOUT).

The groups are then put in their buckets (lms.query.timebuckets), in Python.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from typing_extensions import TypedDict

from lms.domain.severity import SEVERITY_ORDER, SeverityName
from lms.domain.timefmt import rfc3339
from lms.query.errors import QueryError, TooManyBuckets
from lms.query.filters import LogQuery
from lms.query.reader import LogReader
from lms.query.search import TextSearch
from lms.query.sql import Conditions, filter_conditions, severities_of
from lms.query.timebuckets import (
    GRAIN_FORMATS,
    Buckets,
    BucketSize,
    bucket_window,
    make_buckets,
    zone,
)
from lms.store.volume_rollup import hour_of

Statement = tuple[str, list[object]]
ERROR_SEVERITIES = ("error", "fatal")


def uses_rollup(query: LogQuery) -> bool:
    """Whether the rollup can answer the filters: it only knows service, severity, time."""
    others = (
        query.resource_id,
        query.trace_id,
        query.span_id,
        query.commit,
        query.parent_resource_id,
        query.user_id,
        query.q,
    )
    return all(value is None for value in others)


def _ceil_hour(moment: datetime) -> datetime:
    start = hour_of(moment)
    return start if start == moment else start + timedelta(hours=1)


def build_statements(
    query: LogQuery, buckets: Buckets, by_service: bool, search: TextSearch | None
) -> list[Statement]:
    """The SELECTs of one series. Each gives rows (unit start, [service,] severity, count)."""
    since, until = buckets.since, buckets.until
    if uses_rollup(query) and buckets.grain == "hour":
        first, last = _ceil_hour(since), hour_of(until)
        if first < last:
            edges = [(a, b) for a, b in ((since, first), (last, until)) if a < b]
            statements = [_rollup_sql(query, first, last, by_service)]
            if edges:
                statements.append(_exact_sql(query, edges, "hour", by_service, search))
            return statements
    return [_exact_sql(query, [(since, until)], buckets.grain, by_service, search)]


def _group(by_service: bool) -> str:
    return "service_name, severity" if by_service else "severity"


def _rollup_sql(query: LogQuery, first: datetime, last: datetime, by_service: bool) -> Statement:
    cond = Conditions(["hour_start >= %s", "hour_start < %s"], [first, last])
    if query.service is not None:
        cond.add("service_name = %s", query.service)
    severities = severities_of(query)
    if severities:
        cond.add(f"severity IN ({', '.join(['%s'] * len(severities))})", *severities)
    group = _group(by_service)
    sql = (
        f"SELECT hour_start, {group}, SUM(`count`) FROM volume_rollup{cond.where()}"
        f" GROUP BY hour_start, {group}"
    )
    return sql, cond.args


def _exact_sql(
    query: LogQuery,
    ranges: Sequence[tuple[datetime, datetime]],
    grain: str,
    by_service: bool,
    search: TextSearch | None,
) -> Statement:
    """COUNT(*) GROUP BY grain unit over the rows of the filters in `ranges`.

    The severities are always named (all five when none is asked for), so that the
    (severity, timestamp) and (column, severity, timestamp) indexes range over the time
    and answer from their entries, without reading rows."""
    by_id = (query.trace_id, query.span_id, query.user_id)
    use_index = search is not None and all(value is None for value in by_id)
    cond = filter_conditions(query, search, use_index)
    if not query.severities:
        cond.add(f"severity IN ({', '.join(['%s'] * len(SEVERITY_ORDER))})", *SEVERITY_ORDER)
    spans = " OR ".join(["(`timestamp` >= %s AND `timestamp` < %s)"] * len(ranges))
    cond.add(f"({spans})", *[moment for pair in ranges for moment in pair])
    group = _group(by_service)
    sql = (
        f"SELECT DATE_FORMAT(`timestamp`, %s) AS unit, {group}, COUNT(*) FROM service_logs"
        f"{cond.where()} GROUP BY unit, {group}"
    )
    return sql, [GRAIN_FORMATS[grain], *cond.args]


# --- the answers --------------------------------------------------------------------------


class VolumeBucketJson(TypedDict):
    """Logs in one bucket; `start` is RFC 3339 at the zone's offset."""

    start: str
    total: int
    counts: dict[SeverityName, int]


class ErrorBucketJson(TypedDict):
    """One service's logs in one bucket: all, error + fatal, and their ratio (null: none)."""

    start: str
    total: int
    errors: int
    rate: float | None


class ServiceErrorsJson(TypedDict):
    service: str
    total: int
    errors: int
    rate: float | None
    buckets: list[ErrorBucketJson]


def _unit(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _rate(errors: int, total: int) -> float | None:
    return errors / total if total else None


@dataclass(slots=True)
class Counts:
    """Counts per (bucket, service, severity); service "" when not grouped by it."""

    buckets: Buckets
    by_key: Counter[tuple[int, str, str]] = field(default_factory=Counter)

    def add(self, rows: Sequence[Sequence[Any]], by_service: bool) -> None:
        parsed: dict[Any, int] = {}
        for row in rows:
            unit, count = row[0], int(row[-1])
            if unit not in parsed:
                parsed[unit] = self.buckets.index(_unit(unit))
            service = str(row[1]) if by_service else ""
            self.by_key[(parsed[unit], service, str(row[-2]))] += count

    def volume_json(self) -> dict[str, Any]:
        buckets: list[VolumeBucketJson] = []
        for i in range(len(self.buckets.starts)):
            counts: dict[SeverityName, int] = {
                s: self.by_key.get((i, "", s), 0) for s in SEVERITY_ORDER
            }
            buckets.append(
                {
                    "start": self.buckets.start_text(i),
                    "total": sum(counts.values()),
                    "counts": counts,
                }
            )
        return {
            **self._range(),
            "total": sum(b["total"] for b in buckets),
            "buckets": buckets,
        }

    def errors_json(self, cap: int) -> dict[str, Any]:
        n = len(self.buckets.starts)
        services = sorted({service for _i, service, _s in self.by_key})
        if len(services) * n > cap:
            raise TooManyBuckets(
                "bucket", cap, "ask for one service, shorten the range or use a larger bucket"
            )
        out: list[ServiceErrorsJson] = []
        for service in services:
            series: list[ErrorBucketJson] = []
            for i in range(n):
                total = sum(self.by_key.get((i, service, s), 0) for s in SEVERITY_ORDER)
                errors = sum(self.by_key.get((i, service, s), 0) for s in ERROR_SEVERITIES)
                series.append(
                    {
                        "start": self.buckets.start_text(i),
                        "total": total,
                        "errors": errors,
                        "rate": _rate(errors, total),
                    }
                )
            total = sum(b["total"] for b in series)
            errors = sum(b["errors"] for b in series)
            out.append(
                {
                    "service": service,
                    "total": total,
                    "errors": errors,
                    "rate": _rate(errors, total),
                    "buckets": series,
                }
            )
        out.sort(key=lambda s: (-s["errors"], s["service"]))
        return {**self._range(), "services": out}

    def _range(self) -> dict[str, str]:
        return {"from": rfc3339(self.buckets.since), "to": rfc3339(self.buckets.until)}


# --- what the API and the CLI call ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesRequest:
    """One analytics question: the filters of GET /v1/logs (limit and cursor unused), the
    bucket size, the zone of its boundaries, and whether the previous period comes too."""

    query: LogQuery
    bucket: BucketSize = "hour"
    tz: str = "UTC"
    compare: bool = False


async def _series(
    reader: LogReader, request: SeriesRequest, by_service: bool, cap: int, now: datetime | None
) -> list[Counts]:
    """The counts of the range (and of the previous period when asked), each read in one
    consistent snapshot."""
    query = request.query
    since, until = bucket_window(request.bucket, query.since, query.until, now)
    try:
        buckets = make_buckets(request.bucket, zone(request.tz), since, until, cap)
        periods = [buckets, buckets.previous(cap)] if request.compare else [buckets]
    except OverflowError:
        raise QueryError("from", "the range reaches dates the time zone cannot express") from None
    search = None if query.q is None else await reader.text_search(query.q)
    answers: list[Counts] = []
    for period in periods:
        counts = Counts(period)
        for rows in await reader.snapshot(build_statements(query, period, by_service, search)):
            counts.add(rows, by_service)
        answers.append(counts)
    return answers


def _answer(request: SeriesRequest, parts: list[dict[str, Any]]) -> dict[str, Any]:
    answer = {"bucket": request.bucket, "tz": request.tz, **parts[0]}
    if request.compare:
        answer["previous"] = parts[1]
    return answer


async def volume(
    reader: LogReader, request: SeriesRequest, cap: int, now: datetime | None = None
) -> dict[str, Any]:
    """GET /v1/analytics/volume: counts per bucket and severity (zeros included)."""
    series = await _series(reader, request, False, cap, now)
    return _answer(request, [counts.volume_json() for counts in series])


async def error_rates(
    reader: LogReader, request: SeriesRequest, cap: int, now: datetime | None = None
) -> dict[str, Any]:
    """GET /v1/analytics/errors: per service, error + fatal against all, per bucket and in
    the range, services ranked by errors."""
    series = await _series(reader, request, True, cap, now)
    return _answer(request, [counts.errors_json(cap) for counts in series])
