"""Facets: the most frequent values of the filter fields among the logs of a query, for the
explorer's side panel (GET /v1/logs/facets).

Counting every matching row of a big table for each request would cost seconds, so counts
come from one of two sources, read in one consistent snapshot:

- the newest FACETS_MAX_ROWS matching rows, a sample read the way GET /v1/logs reads a page
  (the same index, newest first, `build_logs_sql` with more rows): one statement materialises
  it once and groups it per field. When more rows match, the counts are of those newest
  ones and `complete` is false; otherwise they are exact.
- the rollups, exact whatever the range, for `service_name` and `severity` when the filters
  are only service, severity and time (lms.query.volume's statements: whole hours from
  volume_rollup, the partial hours at the ends from service_logs). A request of only these
  fields then reads no sample at all.

`complete` is true when every count of the answer is exact, `scanned` the rows the sampled
counts were taken from (or, with no sampled field, every matching log). Nulls are no value:
they are not counted (a field without a value cannot be filtered by).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo

from typing_extensions import TypedDict

from lms.domain.severity import SEVERITY_ORDER
from lms.query.cursor import Cursor
from lms.query.errors import QueryError
from lms.query.filters import LogQuery
from lms.query.reader import Fetch, LogReader
from lms.query.search import TextSearch
from lms.query.sql import build_logs_sql
from lms.query.timebuckets import Buckets
from lms.query.volume import Shape, build_statements, uses_rollup

FacetField = Literal[
    "service_name",
    "severity",
    "resource_id",
    "trace_id",
    "span_id",
    "commit",
    "parent_resource_id",
    "user_id",
]
FACET_FIELDS: Final[tuple[str, ...]] = get_args(FacetField)
DEFAULT_FIELDS: Final[tuple[str, ...]] = (
    "service_name",
    "severity",
    "resource_id",
    "commit",
    "parent_resource_id",
    "user_id",
)
"""Trace and span ids are left out unless asked for: nearly every value is unique, so their
top values say little and cost a group as large as the sample."""
ROLLUP_FIELDS: Final[frozenset[str]] = frozenset({"service_name", "severity"})
DEFAULT_VALUES = 10
MAX_VALUES = 100
_COLUMN = {name: "`commit`" if name == "commit" else name for name in FACET_FIELDS}
_EARLIEST = datetime(1000, 1, 1)
_LATEST = datetime(9999, 12, 31, 23)
"""The range of DATETIME, on the hour: an unbounded side reads the rollup's every hour."""


def parse_fields(text: str | None) -> tuple[str, ...]:
    """The `fields` parameter (a comma list) as field names, DEFAULT_FIELDS when absent;
    QueryError naming `fields` and the unknown name."""
    if text is None:
        return DEFAULT_FIELDS
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise QueryError("fields", f"names no field; allowed: {', '.join(FACET_FIELDS)}")
    for name in names:
        if name not in FACET_FIELDS:
            raise QueryError(
                "fields", f"{name!r} is not a facet field; allowed: {', '.join(FACET_FIELDS)}"
            )
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class FacetsRequest:
    """The filters of GET /v1/logs (limit and cursor unused), the fields, the values per field
    and the sample's size."""

    query: LogQuery
    fields: tuple[str, ...] = DEFAULT_FIELDS
    limit: int = DEFAULT_VALUES
    max_rows: int = 1_000

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_VALUES:
            raise QueryError("limit", f"must be 1..{MAX_VALUES}, not {self.limit}")
        unknown = [name for name in self.fields if name not in FACET_FIELDS]
        if unknown:
            raise QueryError("fields", f"{unknown[0]!r} is not a facet field")
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1: {self.max_rows}")


class FacetValueJson(TypedDict):
    value: str
    count: int


class FacetsJson(TypedDict):
    """The top values of each field asked for, most frequent first (ties by value, by code
    point)."""

    facets: dict[str, list[FacetValueJson]]
    scanned: int
    complete: bool


def build_facets_sql(
    query: LogQuery, search: TextSearch | None, fields: Sequence[str], limit: int, rows: int
) -> tuple[str, list[object]]:
    """One SELECT over the newest `rows` matching rows: per field (by its index in `fields`)
    its `limit` most frequent values, and (index -1) the sample's size and its oldest row
    ("timestamp id", where the rows beyond it would start).

    The sample is read once: each of its rows is joined with the list of field indexes and
    the value of that field taken, so that one GROUP BY (index, value) counts every field
    (a CTE referenced once per field would be evaluated once per field: MariaDB 10.11 merges
    or materialises each reference on its own). A window then keeps the top `limit` per
    field, ties by value."""
    by_id = (query.trace_id, query.span_id, query.user_id)
    use_index = search is not None and all(value is None for value in by_id)
    columns = ", ".join(dict.fromkeys(["id", "`timestamp`", *(_COLUMN[f] for f in fields)]))
    sample, args = build_logs_sql(query, search, use_index, rows=rows, columns=columns)
    indexes = " UNION ALL ".join(["SELECT -1 AS i", *(f"SELECT {i}" for i in range(len(fields)))])
    value = (
        "CASE f.i "
        + " ".join(
            f"WHEN {i} THEN CONVERT(s.{_COLUMN[name]} USING utf8mb4) COLLATE utf8mb4_bin"
            for i, name in enumerate(fields)
        )
        + " ELSE '' END"
    )
    # Fixed-width text, so that MIN orders it as the pair (timestamp, id).
    oldest = (
        "MIN(CASE WHEN f.i = -1 THEN CONCAT(DATE_FORMAT(s.`timestamp`,"
        " '%%Y-%%m-%%d %%H:%%i:%%s.%%f'), ' ', LPAD(s.id, 20, '0')) END)"
    )
    grouped = (
        f"SELECT f.i, {value} AS v, COUNT(*) AS n, {oldest} AS oldest"
        f" FROM ({sample}) AS s STRAIGHT_JOIN ({indexes}) AS f"
        " GROUP BY f.i, v HAVING v IS NOT NULL"
    )
    ranked = (
        "SELECT i, v, n, oldest, ROW_NUMBER() OVER (PARTITION BY i ORDER BY n DESC, v) AS r"
        f" FROM ({grouped}) AS g"
    )
    sql = f"SELECT i, v, n, oldest FROM ({ranked}) AS t WHERE r <= %s ORDER BY i, r"
    return sql, [*args, limit]


@dataclass(frozen=True, slots=True)
class _Sampled:
    counts: dict[str, list[FacetValueJson]]
    scanned: int
    oldest: Cursor | None


def _sampled(rows: Sequence[Sequence[Any]], fields: Sequence[str]) -> _Sampled:
    counts: dict[str, list[FacetValueJson]] = {name: [] for name in fields}
    scanned, oldest = 0, None
    for index, value, n, last in rows:
        if int(index) < 0:
            scanned = int(n)
            moment, row_id = str(last).rsplit(" ", 1)
            oldest = Cursor(datetime.fromisoformat(moment), int(row_id))
        else:
            counts[fields[int(index)]].append({"value": str(value), "count": int(n)})
    return _Sampled(counts, scanned, oldest)


def _exact_counts(
    rows: Sequence[Sequence[Any]], by_service: Sequence[Sequence[Any]]
) -> tuple[Counter[str], Counter[str]]:
    """(per severity, per service) from the rollup statements' rows."""
    severities: Counter[str] = Counter()
    for row in rows:
        for severity, n in zip(SEVERITY_ORDER, row[1:], strict=True):
            severities[severity] += int(n or 0)
    services: Counter[str] = Counter()
    for service, _unit, total, _errors in by_service:
        services[str(service)] += int(total or 0)
    return severities, services


def _top(counts: Counter[str], limit: int) -> list[FacetValueJson]:
    ranked = sorted(((v, n) for v, n in counts.items() if n), key=lambda p: (-p[1], p[0]))
    return [{"value": value, "count": n} for value, n in ranked[:limit]]


async def facets(reader: LogReader, request: FacetsRequest) -> FacetsJson:
    """GET /v1/logs/facets (see the module's docstring for where each count comes from)."""
    query = replace(request.query, cursor=None)
    exact = [f for f in request.fields if f in ROLLUP_FIELDS] if uses_rollup(query) else []
    sampled_fields = [f for f in request.fields if f not in exact]
    search = None if query.q is None else await reader.text_search(query.q)
    since, until = query.since or _EARLIEST, query.until or _LATEST
    whole = Buckets("hour", ZoneInfo("UTC"), since, until, (since,))

    async def read(fetch: Fetch) -> tuple[_Sampled | None, Counter[str], Counter[str]]:
        sample = None
        if sampled_fields:
            sql, args = build_facets_sql(
                query, search, sampled_fields, request.limit, request.max_rows
            )
            sample = _sampled(await fetch(sql, args), sampled_fields)
        severity_rows: list[Sequence[Any]] = []
        service_rows: list[Sequence[Any]] = []
        if "severity" in exact or (exact and not sampled_fields):
            for sql, args in build_statements(query, whole, Shape(by_unit=False), None):
                severity_rows += await fetch(sql, args)
        if "service_name" in exact:
            shape = Shape(errors=True, by_unit=False)
            for sql, args in build_statements(query, whole, shape, None):
                service_rows += await fetch(sql, args)
        return (sample, *_exact_counts(severity_rows, service_rows))

    sample, severities, services = await reader.snapshot(read)
    answer: dict[str, list[FacetValueJson]] = {}
    exact_counts = {"severity": severities, "service_name": services}
    for name in request.fields:
        if name in exact:
            answer[name] = _top(exact_counts[name], request.limit)
        else:
            assert sample is not None
            answer[name] = sample.counts[name]
    if sample is None:
        return {"facets": answer, "scanned": sum(severities.values()), "complete": True}
    complete = True
    if sample.scanned >= request.max_rows and sample.oldest is not None:
        # Full: is there a matching row beyond it? One row after its oldest, as a page.
        beyond = await reader.logs(replace(query, cursor=sample.oldest, limit=1))
        complete = not beyond.logs
    return {"facets": answer, "scanned": sample.scanned, "complete": complete}
