"""Volume and error rate over time, by the logs' own timestamp: exact, and fast on big tables.

Every count is what COUNT(*) over service_logs with the same filters gives. The sources,
read in one consistent snapshot:

- volume_rollup (sql/010), per (UTC hour, service, severity), when the filters are only
  service, severity and time, and no bucket boundary inside the range cuts an hour (any zone
  with whole-hour offsets). It answers the whole hours of the range; a 30-day range reads
  ~720 x services x severities small index entries instead of millions of rows.
- commit_rollup (sql/015), per (commit, UTC hour, service, severity), likewise when the
  filters are `commit` and at most service, severity and time: the hours of one commit's
  services, instead of every index entry of its logs.
- service_logs itself, COUNT(*) GROUP BY the hour (or minute, when a zone's boundaries cut
  hours, or for minute buckets) over the index of the filters, for every other filter, the
  partial hours at the range's ends, and full-text `q` (exact too, through the FULLTEXT
  index; its time is what such a search costs, bounded by API_QUERY_TIMEOUT).

The groups are then put in their buckets (lms.query.timebuckets), in Python. The error
rates' series come folded, one row per service (lms.query.fold), for the pure-Python driver.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from typing_extensions import TypedDict

from lms.domain.severity import SEVERITY_ORDER, SeverityName
from lms.domain.timefmt import rfc3339
from lms.query.errors import QueryError, TooManyBuckets
from lms.query.filters import LogQuery
from lms.query.fold import Folded, fetch_folded
from lms.query.reader import Fetch, LogReader
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


def uses_rollup(query: LogQuery) -> bool:
    """Whether the rollup can answer the filters: it only knows service, severity, time."""
    others = (
        query.resource_id,
        query.trace_id,
        query.span_id,
        query.commit,
        query.parent_resource_id,
        query.user_id,
        query.pattern_id,
        query.q,
    )
    return all(value is None for value in others)


def rollup_table(query: LogQuery) -> str | None:
    """The rollup that can answer the whole hours of the filters, or None: volume_rollup
    knows service, severity and time; commit_rollup (sql/015) those and `commit`."""
    if uses_rollup(query):
        return "volume_rollup"
    if query.commit is not None and uses_rollup(replace(query, commit=None)):
        return "commit_rollup"
    return None


def ceil_hour(moment: datetime) -> datetime:
    start = hour_of(moment)
    return start if start == moment else start + timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Shape:
    """What a series' SELECTs group by: per severity (volume) or per service with the
    errors counted beside the total (error rates, so five times fewer rows come back)."""

    errors: bool = False
    by_unit: bool = True
    """False: the whole range in one group (the ranking of services)."""
    services: tuple[str, ...] = ()
    """Only these services (the top ones of the ranking); none: all."""


Span = tuple[datetime, datetime]
"""[start, end) of naive UTC moments."""


@dataclass(frozen=True, slots=True)
class RollupSplit:
    """The whole hours [first, last) the rollup `table` answers (rollup_table), and the
    partial `edges` around them counted on service_logs."""

    table: str
    first: datetime
    last: datetime
    edges: list[Span]


def rollup_split(query: LogQuery, buckets: Buckets) -> RollupSplit | None:
    """How the rollup shares a series' range with service_logs; None: it cannot answer (other
    filters, a zone or bucket cutting hours, no whole hour in the range)."""
    since, until = buckets.since, buckets.until
    table = rollup_table(query)
    if table is not None and buckets.grain == "hour":
        first, last = ceil_hour(since), hour_of(until)
        if first < last:
            edges = [(a, b) for a, b in ((since, first), (last, until)) if a < b]
            return RollupSplit(table, first, last, edges)
    return None


def build_statements(
    query: LogQuery, buckets: Buckets, shape: Shape, search: TextSearch | None
) -> list[Statement]:
    """The SELECTs of one series. Each gives rows (unit start, one count per severity), or
    with `shape.errors` (service, unit start, total, errors)."""
    split = rollup_split(query, buckets)
    if split is None:
        whole = [(buckets.since, buckets.until)]
        return [_exact_sql(query, whole, buckets.grain, shape, search, buckets.since)]
    statements = [_rollup_sql(query, split, shape, buckets.since)]
    if split.edges:
        statements.append(_exact_sql(query, split.edges, "hour", shape, search, buckets.since))
    return statements


ERROR_SEVERITIES = ("error", "fatal")
SERVICE_INDEX = "ix_volume_rollup_service"
SERVICES_SQL = "SELECT DISTINCT service_name FROM volume_rollup"
"""Every service with a log (each stored log is counted in the rollup): a loose scan of
SERVICE_INDEX, one entry per service."""


def _only(cond: Conditions, shape: Shape) -> None:
    if shape.services:
        cond.add(f"service_name IN ({', '.join(['%s'] * len(shape.services))})", *shape.services)


def _sum(term: str) -> str:
    """SUM as an integer: MySQL's SUM is DECIMAL, which the driver turns into Decimal at
    ~30 us a value, a third of a second for the 36,000 counts of 10 services over a month.
    Summed as doubles (exact below 2^53): DECIMAL arithmetic made the rollup's sums ~25%
    slower."""
    return f"CAST(SUM(({term}) + 0E0) AS UNSIGNED)"


def _sum_of(terms: Sequence[str]) -> str:
    return _sum(" + ".join(terms)) if terms else "0"


def _rollup_sql(query: LogQuery, split: RollupSplit, shape: Shape, since: datetime) -> Statement:
    """The rows of the split's rollup table in its whole hours. Its severities are columns,
    so a severity filter picks columns (the others count 0) rather than rows."""
    cond = Conditions(["hour_start >= %s", "hour_start < %s"], [split.first, split.last])
    if query.commit is not None:  # commit_rollup: one range of its primary key
        cond.add("`commit` = %s", query.commit)
    if query.service is not None:
        cond.add("service_name = %s", query.service)
    _only(cond, shape)
    wanted = severities_of(query) or list(SEVERITY_ORDER)
    unit, unit_args = ("hour_start", []) if shape.by_unit else ("%s", [since])
    if shape.errors:
        errors = [f"`{s}`" for s in wanted if s in ERROR_SEVERITIES]
        total = _sum_of([f"`{s}`" for s in wanted])
        columns = f"service_name, {unit} AS unit, {total} AS total, {_sum_of(errors)} AS errors"
        group = "service_name"
    else:
        values = ", ".join(_sum(f"`{s}`") if s in wanted else "0" for s in SEVERITY_ORDER)
        columns = f"{unit}, {values}"
        group = ""
    # In the order of an index, so groups stream from it without a temporary table:
    # (hour, ...) for the volume, (service, hour, ...) for the error rates (commit_rollup's
    # (commit, hour, service) sorts the few rows of one commit for those). The error rates
    # of volume_rollup always name their services (one, the top ones, or all:
    # SERVICES_SQL), so that index reads only their ranges; the optimizer preferred the
    # hour index and a temporary table, 2-3 times slower over a month.
    groups = ", ".join(g for g in (group, "hour_start" if shape.by_unit else "") if g)
    forced = shape.errors and split.table == "volume_rollup"
    index = f" FORCE INDEX ({SERVICE_INDEX})" if forced else ""
    sql = f"SELECT {columns} FROM {split.table}{index}{cond.where()}"
    return sql + (f" GROUP BY {groups}" if groups else ""), [*unit_args, *cond.args]


def _exact_sql(
    query: LogQuery,
    ranges: Sequence[tuple[datetime, datetime]],
    grain: str,
    shape: Shape,
    search: TextSearch | None,
    since: datetime,
) -> Statement:
    """COUNT(*) GROUP BY grain unit over the rows of the filters in `ranges`, in the
    rollup's shape (a count per severity, or per service its total and errors).

    The severities are always named (all five when none is asked for), so that the
    (severity, timestamp) and (column, severity, timestamp) indexes range over the time
    and answer from their entries, without reading rows."""
    by_id = (query.trace_id, query.span_id, query.user_id)
    use_index = search is not None and all(value is None for value in by_id)
    cond = filter_conditions(query, search, use_index)
    _only(cond, shape)
    if not query.severities:
        cond.add(f"severity IN ({', '.join(['%s'] * len(SEVERITY_ORDER))})", *SEVERITY_ORDER)
    spans = " OR ".join(["(`timestamp` >= %s AND `timestamp` < %s)"] * len(ranges))
    cond.add(f"({spans})", *[moment for pair in ranges for moment in pair])
    unit, unit_args = (
        ("DATE_FORMAT(`timestamp`, %s)", [GRAIN_FORMATS[grain]])
        if shape.by_unit
        else ("%s", [since])
    )
    if shape.errors:
        errors = _sum("severity IN ('error', 'fatal')")
        columns = f"service_name, {unit} AS unit, COUNT(*) AS total, {errors} AS errors"
        group = "service_name"
    else:
        columns = f"{unit} AS unit, " + ", ".join(_sum(f"severity = '{s}'") for s in SEVERITY_ORDER)
        group = ""
    groups = ", ".join(g for g in ("unit" if shape.by_unit else "", group) if g)
    sql = f"SELECT {columns} FROM service_logs{cond.where()}"
    return sql + (f" GROUP BY {groups}" if groups else ""), [*unit_args, *cond.args]


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


class OtherErrorsJson(TypedDict):
    """The services of the range beyond the top ones, summed."""

    services: int
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


def _range(buckets: Buckets) -> dict[str, str]:
    return {"from": rfc3339(buckets.since), "to": rfc3339(buckets.until)}


@dataclass(slots=True)
class Counts:
    """Counts per (bucket, severity): the volume."""

    buckets: Buckets
    by_key: Counter[tuple[int, str]] = field(default_factory=Counter)

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        parsed: dict[Any, int] = {}
        for row in rows:
            unit = row[0]
            if unit not in parsed:
                parsed[unit] = self.buckets.index(_unit(unit))
            i = parsed[unit]
            for severity, count in zip(SEVERITY_ORDER, row[1:], strict=True):
                self.by_key[(i, severity)] += int(count or 0)

    def volume_json(self) -> dict[str, Any]:
        buckets: list[VolumeBucketJson] = []
        for i in range(len(self.buckets.starts)):
            counts: dict[SeverityName, int] = {
                s: self.by_key.get((i, s), 0) for s in SEVERITY_ORDER
            }
            buckets.append(
                {
                    "start": self.buckets.start_text(i),
                    "total": sum(counts.values()),
                    "counts": counts,
                }
            )
        total = sum(b["total"] for b in buckets)
        return {**_range(self.buckets), "total": total, "buckets": buckets}


Ranking = list[tuple[str, int, int]]
"""(service, total, errors), most errors first (ties by name)."""


@dataclass(slots=True)
class ErrorCounts:
    """Per service, its logs and errors in each bucket (lists indexed like the buckets)."""

    buckets: Buckets
    totals: dict[str, list[int]] = field(default_factory=dict)
    errors: dict[str, list[int]] = field(default_factory=dict)
    _index: dict[str, int] = field(default_factory=dict)

    def _bucket(self, unit: str) -> int:
        i = self._index.get(unit)
        if i is None:
            i = self._index[unit] = self.buckets.index(datetime.fromisoformat(unit))
        return i

    def _series(self, service: str) -> tuple[list[int], list[int]]:
        if service not in self.totals:
            self.totals[service] = [0] * len(self.buckets.starts)
            self.errors[service] = [0] * len(self.buckets.starts)
        return self.totals[service], self.errors[service]

    def add_folded(self, folded: Folded) -> None:
        """Per service, entries (unit, total, errors) as text (lms.query.fold)."""
        for (service,), entries in folded:
            totals, failed = self._series(service)
            for unit, total, errors in entries:
                i = self._bucket(unit)
                totals[i] += int(total)
                failed[i] += int(errors)

    def sums(self) -> dict[str, tuple[int, int]]:
        """Per service, its total and errors over every bucket."""
        return {s: (sum(t), sum(self.errors[s])) for s, t in self.totals.items()}

    def errors_json(self, ranking: Ranking, top: int) -> dict[str, Any]:
        """The top services of `ranking` with their buckets (from these counts), the rest
        summed in `other`."""
        out: list[ServiceErrorsJson] = []
        starts = [self.buckets.start_text(i) for i in range(len(self.buckets.starts))]
        empty = [0] * len(starts)
        for service, total, errors in ranking[:top]:
            totals, failed = self.totals.get(service, empty), self.errors.get(service, empty)
            series: list[ErrorBucketJson] = [
                {"start": start, "total": n, "errors": e, "rate": _rate(e, n)}
                for start, n, e in zip(starts, totals, failed, strict=True)
            ]
            out.append(
                {
                    "service": service,
                    "total": total,
                    "errors": errors,
                    "rate": _rate(errors, total),
                    "buckets": series,
                }
            )
        rest = ranking[top:]
        total, errors = sum(s[1] for s in rest), sum(s[2] for s in rest)
        other: OtherErrorsJson = {
            "services": len(rest),
            "total": total,
            "errors": errors,
            "rate": _rate(errors, total),
        }
        return {**_range(self.buckets), "services": out, "other": other}


def rank(sums: dict[str, tuple[int, int]]) -> Ranking:
    """Services by errors, most first (ties by name)."""
    return sorted(((s, t, e) for s, (t, e) in sums.items()), key=lambda s: (-s[2], s[0]))


# --- what the API and the CLI call ---------------------------------------------------------


DEFAULT_TOP = 10
MAX_TOP = 1000


@dataclass(frozen=True, slots=True)
class SeriesRequest:
    """One analytics question: the filters of GET /v1/logs (limit and cursor unused), the
    bucket size, the zone of its boundaries, whether the previous period comes too, and (for
    error rates) how many services get their buckets."""

    query: LogQuery
    bucket: BucketSize = "hour"
    tz: str = "UTC"
    compare: bool = False
    top: int = DEFAULT_TOP

    def __post_init__(self) -> None:
        if not 1 <= self.top <= MAX_TOP:
            raise QueryError("top", f"must be 1..{MAX_TOP}, not {self.top}")


def periods(request: SeriesRequest, cap: int, now: datetime | None) -> list[Buckets]:
    """The buckets of the range, and with `compare` those of the period just before."""
    query = request.query
    since, until = bucket_window(request.bucket, query.since, query.until, now)
    try:
        buckets = make_buckets(request.bucket, zone(request.tz), since, until, cap)
        return [buckets, buckets.previous(cap)] if request.compare else [buckets]
    except OverflowError:
        raise QueryError("from", "the range reaches dates the time zone cannot express") from None


def series_answer(request: SeriesRequest, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer of `periods`' parts: bucket, zone, the range's figures and `previous`."""
    answer = {"bucket": request.bucket, "tz": request.tz, **parts[0]}
    if request.compare:
        answer["previous"] = parts[1]
    return answer


async def _search(reader: LogReader, query: LogQuery) -> TextSearch | None:
    return None if query.q is None else await reader.text_search(query.q)


async def volume(
    reader: LogReader, request: SeriesRequest, cap: int, now: datetime | None = None
) -> dict[str, Any]:
    """GET /v1/analytics/volume: counts per bucket and severity (zeros included), each
    period read in one consistent snapshot."""
    search = await _search(reader, request.query)
    parts = []
    for period in periods(request, cap, now):
        statements = build_statements(request.query, period, Shape(), search)

        async def read(
            fetch: Fetch, period: Buckets = period, todo: list[Statement] = statements
        ) -> Counts:
            counts = Counts(period)
            for sql, args in todo:
                counts.add(await fetch(sql, args))
            return counts

        parts.append((await reader.snapshot(read)).volume_json())
    return series_answer(request, parts)


async def error_rates(
    reader: LogReader, request: SeriesRequest, cap: int, now: datetime | None = None
) -> dict[str, Any]:
    """GET /v1/analytics/errors: services ranked by errors (error + fatal) in the range,
    the top ones with their buckets, each period read in one consistent snapshot."""
    search = await _search(reader, request.query)
    parts = []
    for period in periods(request, cap, now):

        async def read(fetch: Fetch, period: Buckets = period) -> dict[str, Any]:
            return await _error_period(fetch, request, period, search, cap)

        parts.append(await reader.snapshot(read))
    return series_answer(request, parts)


ERROR_FOLD = (("service_name",), ("unit", "total", "errors"))
"""How the errors' series fold: one row per service (lms.query.fold)."""


async def _error_period(
    fetch: Fetch, request: SeriesRequest, period: Buckets, search: TextSearch | None, cap: int
) -> dict[str, Any]:
    """One period's error rates, in as few rows as the driver can decode fast.

    With the rollup: the edge hours counted on service_logs once (they serve the ranking and
    the series), the ranking of the whole hours from the rollup (one row per service), then
    the rollup's series of the top services only, folded into one row each. Without it
    (another filter, minute buckets): one pass over service_logs per unit and service,
    folded per service, which gives both the ranking and the series (the filter's index
    entries are read once, not once for each)."""
    query, counts, per_unit = request.query, ErrorCounts(period), Shape(errors=True)
    split = rollup_split(query, period)
    if split is None:
        span = [(period.since, period.until)]
        statement = _exact_sql(query, span, period.grain, per_unit, search, period.since)
        counts.add_folded(await fetch_folded(fetch, statement, *ERROR_FOLD))
        ranking = rank(counts.sums())
    else:
        if split.edges:
            edges = _exact_sql(query, split.edges, "hour", per_unit, search, period.since)
            counts.add_folded(await fetch_folded(fetch, edges, *ERROR_FOLD))
        sums = counts.sums()
        every: tuple[str, ...] = ()
        if split.table == "volume_rollup" and query.service is None:
            every = tuple(str(s) for (s,) in await fetch(SERVICES_SQL, []))
        whole = Shape(errors=True, by_unit=False, services=every)
        rollup = _rollup_sql(query, split, whole, period.since)
        for service, _unit_start, total, errors in await fetch(*rollup):
            before = sums.get(str(service), (0, 0))
            sums[str(service)] = (before[0] + int(total), before[1] + int(errors))
        ranking = rank(sums)
    if min(request.top, len(ranking)) * len(period.starts) > cap:
        raise TooManyBuckets("top", cap, "lower top, shorten the range or use a larger bucket")
    top = tuple(name for name, _total, _errors in ranking[: request.top])
    if split is not None and top:
        shape = Shape(errors=True, services=top)
        series = _rollup_sql(query, split, shape, period.since)
        counts.add_folded(await fetch_folded(fetch, series, *ERROR_FOLD))
    return counts.errors_json(ranking, request.top)
