"""SQL builders of the log search: the conditions and the page SELECT. Pure, so tests can
EXPLAIN exactly what the reader runs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lms.domain.severity import SEVERITY_ORDER
from lms.query.cursor import Cursor
from lms.query.filters import LogQuery
from lms.query.search import TextSearch

COLUMNS = (
    "id, message_id, service_name, severity, `timestamp`, payload, resource_id, trace_id,"
    " span_id, `commit`, metadata"
)


def joined_columns(columns: str) -> str:
    """`columns` (a list like COLUMNS) as read through a join with service_logs AS l."""
    return ", ".join(f"l.{c.strip()}" for c in columns.split(","))


JOINED_COLUMNS = joined_columns(COLUMNS)
"""The columns of a page read through a join with service_logs AS l."""
NEWEST_FIRST = "ORDER BY `timestamp` DESC, id DESC"
IX_TIMESTAMP = "ix_service_logs_timestamp"
IX_SEVERITY = "ix_service_logs_severity_ts"
IX_SERVICE_SEVERITY = "ix_service_logs_service_severity_ts"
IX_RESOURCE = "ix_service_logs_resource_ts"
IX_COMMIT = "ix_service_logs_commit_ts"
IX_PARENT = "ix_service_logs_parent_ts"
IX_USER = "ix_service_logs_user_requests"
IX_PATTERN = "ix_service_logs_pattern_ts"


def filter_conditions(query: LogQuery, search: TextSearch | None, use_index: bool) -> Conditions:
    """The conditions of every filter but the time range and the cursor."""
    cond = Conditions()
    for column, value in (
        ("resource_id", query.resource_id),
        ("trace_id", query.trace_id),
        ("span_id", query.span_id),
        ("`commit`", query.commit),
        ("parent_resource_id", query.parent_resource_id),
        ("user_id", query.user_id),
        ("pattern_id", query.pattern_id),
    ):
        if value is not None:
            cond.add(f"{column} = %s", value)
    if search is not None:
        if use_index:
            cond.add("MATCH (payload) AGAINST (%s IN BOOLEAN MODE)", search.against)
        for pattern in search.patterns:
            cond.add("payload REGEXP %s", pattern)
    if query.service is not None:
        cond.add("service_name = %s", query.service)
    severities = severities_of(query)
    if severities:
        cond.add(f"severity IN ({', '.join(['%s'] * len(severities))})", *severities)
    return cond


def time_range(query: LogQuery) -> Conditions:
    cond = Conditions()
    if query.since is not None:
        cond.add("`timestamp` >= %s", query.since)
    if query.until is not None:
        cond.add("`timestamp` < %s", query.until)
    return cond + before(query.cursor)


def before(bound: Cursor | None) -> Conditions:
    """Rows strictly before `bound` in (timestamp, id) order (no condition for None)."""
    cond = Conditions()
    if bound is not None:
        # Expanded row comparison (timestamp, id) < (t, i): MariaDB only ranges over this form.
        t = bound.timestamp
        cond.add("`timestamp` <= %s AND (`timestamp` < %s OR id < %s)", t, t, bound.id)
    return cond


def severities_of(query: LogQuery) -> list[str]:
    return sorted(set(query.severities), key=SEVERITY_ORDER.index)


@dataclass(slots=True)
class Conditions:
    sql: list[str] = field(default_factory=list)
    args: list[object] = field(default_factory=list)

    def add(self, condition: str, *values: object) -> None:
        self.sql.append(condition)
        self.args.extend(values)

    def __add__(self, other: Conditions) -> Conditions:
        return Conditions([*self.sql, *other.sql], [*self.args, *other.args])

    def where(self) -> str:
        return " WHERE " + " AND ".join(self.sql) if self.sql else ""


def build_logs_sql(
    query: LogQuery,
    search: TextSearch | None = None,
    use_index: bool = True,
    rows: int | None = None,
    columns: str = COLUMNS,
) -> tuple[str, list[object]]:
    """The SELECT of one page (limit + 1 rows, to know whether another page follows).

    `rows` and `columns` change what it selects, not how: the newest `rows` matching rows
    (instead of limit + 1, which LogQuery bounds to a page), with `columns` (a list like
    COLUMNS) instead of a log's. The facets (lms.query.facets) count over such a sample.

    Pure, so tests can EXPLAIN exactly what the API runs.

    Without full-text search and trace/span ids, it is a UNION ALL with one branch per
    severity (the ones asked for, or all five) over the index of the driving filter, which is
    (column, severity, timestamp) for service, resource_id, commit and parent_resource_id and
    (severity, timestamp) without any. Each branch reads that index backwards from the cursor
    and stops after limit + 1 entries; only the (timestamp, id) of the merged page go on to
    read their rows (a deferred join), so a page reads ~limit rows whatever the table size.
    The indexes are forced: MariaDB would otherwise sometimes pick a `ref` on the prefix and
    walk through every newer row.

    With `search` the FULLTEXT index finds the candidates (`use_index`), or only the REGEXPs
    filter (trace/span/user lookups); trace and span ids select so few rows that one plain
    SELECT sorts them.

    A user's logs: the page's (timestamp, id) first, then its rows. The index is not forced,
    as the best plan depends on the user: for most, the user_id prefix of the request-order
    index (sql/008), whose entries hold (timestamp, id) but not in newest-first order, so
    they are sorted (entries only, no rows); for a user with a large share of the logs,
    walking the timestamp index newest first finds a page sooner (3 ms against 28 ms for a
    user of 50,000 among 200,000 logs), and MariaDB, knowing the user's count from the
    index, picks it.
    """
    fetch = query.limit + 1 if rows is None else rows
    if search is not None or query.trace_id is not None or query.span_id is not None:
        cond = filter_conditions(query, search, use_index) + time_range(query)
        sql = f"SELECT {columns} FROM service_logs{cond.where()} {NEWEST_FIRST} LIMIT %s"
        return sql, [*cond.args, fetch]
    if query.user_id is not None:
        cond = filter_conditions(query, None, False) + time_range(query)
        branch = f"(SELECT id, `timestamp` FROM service_logs{cond.where()} {NEWEST_FIRST} LIMIT %s)"
        return _page_rows([branch], columns), [*cond.args, fetch, fetch]
    index, eq = driver_index(query)
    filters = filter_conditions(replace(query, severities=()), None, False)
    others = filters + time_range(query)
    if rows is not None and index == IX_SEVERITY and not query.severities and not filters.sql:
        # A large sample of every log: the timestamp index has them in order, where one
        # branch per severity would read `rows` entries each and drop four fifths.
        cond = time_range(query)
        branch = (
            f"(SELECT id, `timestamp` FROM service_logs FORCE INDEX ({IX_TIMESTAMP})"
            f"{cond.where()} {NEWEST_FIRST} LIMIT %s)"
        )
        return _page_rows([branch], columns), [*cond.args, fetch, fetch]
    branches: list[str] = []
    args: list[object] = []
    for severity in severities_of(query) or SEVERITY_ORDER:
        cond = eq + Conditions(["severity = %s"], [severity]) + others
        branches.append(
            f"(SELECT id, `timestamp` FROM service_logs FORCE INDEX ({index}){cond.where()}"
            f" {NEWEST_FIRST} LIMIT %s)"
        )
        args.extend([*cond.args, fetch])
    return _page_rows(branches, columns), [*args, fetch]


def build_log_sql(log_id: int) -> tuple[str, list[object]]:
    """One log by its primary key (a permalink of the web UI)."""
    return f"SELECT {COLUMNS} FROM service_logs WHERE id = %s", [log_id]


def _page_rows(branches: list[str], columns: str) -> str:
    """Merge branches that each select (id, timestamp) into the page, then read its rows: a
    deferred join, so only the rows of the page are read whole."""
    union = " UNION ALL ".join(branches)
    joined = JOINED_COLUMNS if columns == COLUMNS else joined_columns(columns)
    return (
        f"SELECT {joined} FROM (SELECT id, `timestamp` FROM ({union})"
        f" AS branches {NEWEST_FIRST} LIMIT %s) AS page JOIN service_logs AS l ON l.id = page.id"
        " ORDER BY page.`timestamp` DESC, page.id DESC"
    )


def driver_index(query: LogQuery) -> tuple[str, Conditions]:
    """The index a query reads (all end in severity, timestamp) and its equality prefix."""
    for index, column, value in (
        (IX_PATTERN, "pattern_id", query.pattern_id),
        (IX_RESOURCE, "resource_id", query.resource_id),
        (IX_COMMIT, "`commit`", query.commit),
        (IX_PARENT, "parent_resource_id", query.parent_resource_id),
        (IX_SERVICE_SEVERITY, "service_name", query.service),
    ):
        if value is not None:
            return index, Conditions([f"{column} = %s"], [value])
    return IX_SEVERITY, Conditions()
