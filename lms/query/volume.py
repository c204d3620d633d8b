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

The groups are then put in their buckets (lms.query.timebuckets), in Python.
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


def build_statements(
    query: LogQuery, buckets: Buckets, shape: Shape, search: TextSearch | None
) -> list[Statement]:
    """The SELECTs of one series. Each gives rows (unit start, one count per severity), or
    with `shape.errors` (unit start, service, count, errors)."""
    since, until = buckets.since, buckets.until
    table = rollup_table(query)
    if table is not None and buckets.grain == "hour":
        first, last = ceil_hour(since), hour_of(until)
        if first < last:
            edges = [(a, b) for a, b in ((since, first), (last, until)) if a < b]
            statements = [_rollup_sql(query, table, first, last, shape, since)]
            if edges:
                statements.append(_exact_sql(query, edges, "hour", shape, search, since))
            return statements
    return [_exact_sql(query, [(since, until)], buckets.grain, shape, search, since)]


ERROR_SEVERITIES = ("error", "fatal")


def _only(cond: Conditions, shape: Shape) -> None:
    if shape.services:
        cond.add(f"service_name IN ({', '.join(['%s'] * len(shape.services))})", *shape.services)


def _sum(term: str) -> str:
    """SUM as an integer: MySQL's SUM is DECIMAL, which the driver turns into Decimal at
    ~30 us a value, a third of a second for the 36,000 counts of 10 services over a month."""
    return f"CAST(SUM({term}) AS UNSIGNED)"


def _sum_of(terms: Sequence[str]) -> str:
    return _sum(" + ".join(terms)) if terms else "0"


def _rollup_sql(
    query: LogQuery, table: str, first: datetime, last: datetime, shape: Shape, since: datetime
) -> Statement:
    """The rows of rollup `table` in [first, last): whole hours. Its severities are columns,
    so a severity filter picks columns (the others count 0) rather than rows."""
    cond = Conditions(["hour_start >= %s", "hour_start < %s"], [first, last])
    if query.commit is not None:  # commit_rollup: one range of its primary key
        cond.add("`commit` = %s", query.commit)
    if query.service is not None:
        cond.add("service_name = %s", query.service)
    _only(cond, shape)
    wanted = severities_of(query) or list(SEVERITY_ORDER)
    if shape.errors:
        errors = [f"`{s}`" for s in wanted if s in ERROR_SEVERITIES]
        group = "service_name"
        values = f"{_sum_of([f'`{s}`' for s in wanted])}, {_sum_of(errors)}"
    else:
        group = ""
        values = ", ".join(_sum(f"`{s}`") if s in wanted else "0" for s in SEVERITY_ORDER)
    unit, unit_args = ("hour_start", []) if shape.by_unit else ("%s", [since])
    # In the order of an index, so groups stream from it without a temporary table:
    # (hour, ...) for the volume, (service, hour, ...) for the error rates (commit_rollup's
    # (commit, hour, service) sorts the few rows of one commit for those).
    groups = ", ".join(g for g in (group, "hour_start" if shape.by_unit else "") if g)
    columns = ", ".join(c for c in (unit, group, values) if c)
    sql = f"SELECT {columns} FROM {table}{cond.where()}"
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
    if shape.errors:
        group = "service_name"
        values = "COUNT(*), " + _sum("severity IN ('error', 'fatal')")
    else:
        group = ""
        values = ", ".join(_sum(f"severity = '{s}'") for s in SEVERITY_ORDER)
    unit, unit_args = (
        ("DATE_FORMAT(`timestamp`, %s)", [GRAIN_FORMATS[grain]])
        if shape.by_unit
        else ("%s", [since])
    )
    groups = ", ".join(g for g in ("unit" if shape.by_unit else "", group) if g)
    columns = ", ".join(c for c in (f"{unit} AS unit", group, values) if c)
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


@dataclass(slots=True)
class Counts:
    """Counts per (bucket, service, severity), or with errors per (bucket, service,
    "total" | "errors"); service "" when not grouped by it."""

    buckets: Buckets
    by_key: Counter[tuple[int, str, str]] = field(default_factory=Counter)

    def add(self, rows: Sequence[Sequence[Any]], errors: bool) -> None:
        parsed: dict[Any, int] = {}
        for row in rows:
            unit = row[0]
            if unit not in parsed:
                parsed[unit] = self.buckets.index(_unit(unit))
            i = parsed[unit]
            if errors:
                self.by_key[(i, str(row[1]), "total")] += int(row[2] or 0)
                self.by_key[(i, str(row[1]), "errors")] += int(row[3] or 0)
            else:
                for severity, count in zip(SEVERITY_ORDER, row[1:], strict=True):
                    self.by_key[(i, "", severity)] += int(count or 0)

    def services(self) -> list[tuple[str, int, int]]:
        """(service, total, errors) over all buckets, most errors first."""
        totals: Counter[tuple[str, str]] = Counter()
        for (_i, service, kind), n in self.by_key.items():
            totals[(service, kind)] += n
        names = {service for service, _kind in totals}
        ranked = [(name, totals[(name, "total")], totals[(name, "errors")]) for name in names]
        return sorted(ranked, key=lambda s: (-s[2], s[0]))

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
        return {**self._range(), "total": sum(b["total"] for b in buckets), "buckets": buckets}

    def errors_json(self, ranking: list[tuple[str, int, int]], top: int) -> dict[str, Any]:
        """The top services of `ranking` with their buckets (from these counts), the rest
        summed in `other`."""
        out: list[ServiceErrorsJson] = []
        starts = [self.buckets.start_text(i) for i in range(len(self.buckets.starts))]
        for service, total, errors in ranking[:top]:
            series: list[ErrorBucketJson] = []
            for i in range(len(self.buckets.starts)):
                in_bucket = self.by_key.get((i, service, "total"), 0)
                failed = self.by_key.get((i, service, "errors"), 0)
                series.append(
                    {
                        "start": starts[i],
                        "total": in_bucket,
                        "errors": failed,
                        "rate": _rate(failed, in_bucket),
                    }
                )
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
        return {**self._range(), "services": out, "other": other}

    def _range(self) -> dict[str, str]:
        return {"from": rfc3339(self.buckets.since), "to": rfc3339(self.buckets.until)}


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
                counts.add(await fetch(sql, args), errors=False)
            return counts

        parts.append((await reader.snapshot(read)).volume_json())
    return series_answer(request, parts)


async def error_rates(
    reader: LogReader, request: SeriesRequest, cap: int, now: datetime | None = None
) -> dict[str, Any]:
    """GET /v1/analytics/errors: services ranked by errors (error + fatal) in the range,
    the top ones with their buckets, each period read in one consistent snapshot: the
    ranking first (the range as one group), then the buckets of the top services only."""
    search = await _search(reader, request.query)
    query, parts = request.query, []
    for period in periods(request, cap, now):

        async def read(fetch: Fetch, period: Buckets = period) -> dict[str, Any]:
            whole = Counts(period)
            for sql, args in build_statements(
                query, period, Shape(errors=True, by_unit=False), search
            ):
                whole.add(await fetch(sql, args), errors=True)
            ranking = whole.services()
            if min(request.top, len(ranking)) * len(period.starts) > cap:
                raise TooManyBuckets(
                    "top", cap, "lower top, shorten the range or use a larger bucket"
                )
            counts = Counts(period)
            top = tuple(name for name, _total, _errors in ranking[: request.top])
            if top:
                shape = Shape(errors=True, services=top)
                for sql, args in build_statements(query, period, shape, search):
                    counts.add(await fetch(sql, args), errors=True)
            return counts.errors_json(ranking, request.top)

        parts.append(await reader.snapshot(read))
    return series_answer(request, parts)
