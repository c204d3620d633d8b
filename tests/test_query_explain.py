"""EXPLAIN of every query shape of GET /v1/logs: an index, never a full table scan.

20,000 realistic rows (lms.devtools.seed, the query benchmark's data) are enough for MariaDB
to cost plans the way it does on big tables, once ANALYZE TABLE has run; on a tiny table it
would rightly prefer scanning everything.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pymysql
import pytest

from lms.devtools.seed import END, bulk_load
from lms.query.cursor import Bound, Cursor, RequestCursor
from lms.query.filters import LogQuery
from lms.query.probe import build_probe_sql
from lms.query.search import parse_search
from lms.query.sql import build_logs_sql
from lms.query.user_requests import RequestsQuery, build_requests_sql
from tests.conftest import mysql_config

pytestmark = pytest.mark.integration

ROWS = 20_000


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[pymysql.Connection, dict[str, Any]]]:
    name = f"lms_test_{secrets.token_hex(6)}"
    admin = pymysql.connect(**mysql_config(), autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        bulk_load(name, ROWS)
        conn = pymysql.connect(
            **mysql_config(), database=name, cursorclass=pymysql.cursors.DictCursor
        )
        with conn.cursor() as cur:
            # The HTTP requests of the seed become request logs of 40 users (sql/008).
            cur.execute(
                "UPDATE service_logs SET metadata = JSON_SET(COALESCE(metadata, '{}'),"
                " '$.user_id', CONCAT('user-', id % 40), '$.instance', CONCAT('web-', id % 3),"
                " '$.seq', id) WHERE payload LIKE 'GET /api/%' OR payload LIKE 'POST /api/%'"
            )
            conn.commit()
            cur.execute("ANALYZE TABLE service_logs")
            cur.fetchall()
            cur.execute(
                "SELECT user_id, COUNT(*) AS n FROM service_logs WHERE user_id IS NOT NULL"
                " GROUP BY user_id ORDER BY n DESC LIMIT 1"
            )
            user = cur.fetchone()
            assert user is not None and user["n"] > 50, user
            cur.execute(
                "SELECT service_name, resource_id, trace_id, span_id, `commit`,"
                " parent_resource_id, `timestamp`, id FROM service_logs"
                " WHERE resource_id IS NOT NULL AND trace_id IS NOT NULL"
                " AND `commit` IS NOT NULL AND parent_resource_id IS NOT NULL"
                " ORDER BY id DESC LIMIT 1"
            )
            values = cur.fetchone()
        yield conn, {**values, "user_id": user["user_id"]}
        conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def explain(conn: pymysql.Connection, sql: str, args: list[object]) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute("EXPLAIN " + sql, args)
        return list(cur.fetchall())


def assert_no_table_scan(plan: list[dict[str, Any]], walk: int = 0) -> None:
    """No read of every row (ALL) nor of every index entry (index), except an ordered walk
    down an index that LIMIT stops after at most `walk` entries (no filesort)."""
    reads = [row for row in plan if row["table"] == "service_logs"]
    assert reads, plan
    for row in reads:  # other rows (<derived2>, <union...>) are the page itself
        assert row["type"] != "ALL", plan
        if row["type"] == "index":
            assert int(row["rows"]) <= walk, plan
            assert "filesort" not in (row["Extra"] or ""), plan
        assert row["key"], plan


def queries(v: dict[str, Any]) -> dict[str, LogQuery]:
    t = v["timestamp"]
    since, until = t - timedelta(hours=6), t
    return {
        "no filter": LogQuery(),
        "service": LogQuery(service=v["service_name"]),
        "severity": LogQuery(severities=("error",)),
        "severities": LogQuery(severities=("error", "fatal")),
        "from/to": LogQuery(since=since, until=until),
        "from": LogQuery(since=since),
        "to": LogQuery(until=until),
        "resource_id": LogQuery(resource_id=v["resource_id"]),
        "trace_id": LogQuery(trace_id=v["trace_id"]),
        "span_id": LogQuery(span_id=v["span_id"]),
        "commit": LogQuery(commit=v["commit"]),
        "parent_resource_id": LogQuery(parent_resource_id=v["parent_resource_id"]),
        "service + severity + from/to": LogQuery(
            service=v["service_name"], severities=("warn", "error"), since=since, until=until
        ),
        "resource + severity": LogQuery(resource_id=v["resource_id"], severities=("info",)),
        "commit + parent": LogQuery(commit=v["commit"], parent_resource_id=v["parent_resource_id"]),
        "cursor deep in the past": LogQuery(cursor=Cursor(t - timedelta(days=20), 5)),
        "service + cursor": LogQuery(
            service=v["service_name"], cursor=Cursor(t - timedelta(days=10), 5)
        ),
        "commit + cursor": LogQuery(commit=v["commit"], cursor=Cursor(t, int(v["id"]))),
        "user_id": LogQuery(user_id=v["user_id"]),
        "user_id + severity + cursor": LogQuery(
            user_id=v["user_id"], severities=("info",), cursor=Cursor(t, int(v["id"]))
        ),
    }


SHAPES = list(queries({"timestamp": END, "id": 1, **dict.fromkeys(
    ["service_name", "resource_id", "trace_id", "span_id", "commit", "parent_resource_id",
     "user_id"], "x"
)}))  # fmt: skip


@pytest.mark.parametrize("name", SHAPES)
def test_filters_use_an_index(loaded: tuple[pymysql.Connection, dict[str, Any]], name: str) -> None:
    conn, values = loaded
    query = queries(values)[name]
    assert_no_table_scan(explain(conn, *build_logs_sql(query)))


@pytest.mark.parametrize(
    ("column", "index"),
    [
        ("resource_id", "ix_service_logs_resource_ts"),
        ("commit", "ix_service_logs_commit_ts"),
        ("parent_resource_id", "ix_service_logs_parent_ts"),
    ],
)
def test_a_filter_with_service_reads_index_entries_only(
    loaded: tuple[pymysql.Connection, dict[str, Any]], column: str, index: str
) -> None:
    """The service is checked on the filter index's entries (migration 003): no row is read
    until the page is known, however many entries of another service come first."""
    conn, values = loaded
    query = LogQuery(service=values["service_name"], **{column: values[column]})
    plan = explain(conn, *build_logs_sql(query))
    assert_no_table_scan(plan)
    branches = [row for row in plan if row["table"] == "service_logs"]
    assert len(branches) == 5, plan  # one per severity
    for row in branches:
        assert row["key"] == index, plan
        assert "Using index" in (row["Extra"] or ""), plan
        assert "filesort" not in (row["Extra"] or ""), plan


SEARCHES = {
    "word": LogQuery(q="timeout"),
    "phrase": LogQuery(q='"Failed to connect"'),
    "word + service": LogQuery(q="timeout", service="svc-api"),
    "phrase + severity + range": LogQuery(
        q='"connection reset"',
        severities=("error",),
        since=END - timedelta(days=1),
        until=END,
    ),
    "word + commit": LogQuery(q="slow", commit="x"),
    "non-ASCII": LogQuery(q="café"),
}


@pytest.mark.parametrize("name", list(SEARCHES))
def test_full_text_search_uses_the_fulltext_index(
    loaded: tuple[pymysql.Connection, dict[str, Any]], name: str
) -> None:
    conn, _ = loaded
    query = SEARCHES[name]
    assert query.q is not None
    plan = explain(conn, *build_logs_sql(query, parse_search(query.q)))
    assert [row["type"] for row in plan if row["table"] == "service_logs"] == ["fulltext"]


@pytest.mark.parametrize("name", [n for n in SEARCHES if n != "non-ASCII"])
def test_full_text_probe_reads_an_index_range(
    loaded: tuple[pymysql.Connection, dict[str, Any]], name: str
) -> None:
    conn, values = loaded
    query = SEARCHES[name]
    assert query.q is not None
    plan = build_probe_sql(query, parse_search(query.q), 2000)
    # Without a time range the bounds walk the newest 2,000 entries of ix_service_logs_timestamp.
    assert_no_table_scan(explain(conn, plan.bounds_sql, plan.bounds_args), walk=2000)
    floor = Bound(values["timestamp"] - timedelta(days=1), 1)
    ceiling = Bound(values["timestamp"], 2**40)
    for bound in (None, floor):
        assert_no_table_scan(explain(conn, *plan.probe(bound)), walk=query.limit + 1)
    # A deeper probe, below an earlier one.
    plan = build_probe_sql(query, parse_search(query.q), 2000, ceiling)
    assert_no_table_scan(explain(conn, plan.bounds_sql, plan.bounds_args), walk=2000)
    assert_no_table_scan(explain(conn, *plan.probe(floor)), walk=query.limit + 1)


@pytest.mark.parametrize("name", [n for n in SEARCHES if n != "non-ASCII"])
def test_a_probe_tests_its_words_on_index_entries(
    loaded: tuple[pymysql.Connection, dict[str, Any]], name: str
) -> None:
    """The indexes of the probe hold short_payload (sql/004): it reads index entries only,
    and rows by primary key, in time order, for candidates."""
    conn, values = loaded
    query = SEARCHES[name]
    assert query.q is not None
    plan = build_probe_sql(query, parse_search(query.q), 2000)
    floor = Bound(values["timestamp"] - timedelta(days=1), 1)
    rows = explain(conn, *plan.probe(floor))
    entries = [row for row in rows if row["table"] == "service_logs"]
    assert entries, rows
    for row in entries:
        assert row["key"].startswith("ix_service_logs_"), rows
        assert "Using index" in (row["Extra"] or ""), rows
    (read,) = [row for row in rows if row["table"] == "l"]
    assert (read["type"], read["key"]) == ("eq_ref", "PRIMARY"), rows


def test_search_within_a_trace_reads_the_trace(
    loaded: tuple[pymysql.Connection, dict[str, Any]],
) -> None:
    conn, values = loaded
    query = LogQuery(q="timeout", trace_id=values["trace_id"])
    plan = explain(conn, *build_logs_sql(query, parse_search("timeout"), use_index=False))
    assert_no_table_scan(plan)
    assert plan[0]["key"] == "ix_service_logs_trace"


def test_a_users_logs_are_found_through_the_request_index(
    loaded: tuple[pymysql.Connection, dict[str, Any]],
) -> None:
    """GET /v1/logs?user_id= for a user with few of the logs sorts their index entries (they
    hold timestamp and id) and reads only the rows of the page."""
    conn, values = loaded
    plan = explain(conn, *build_logs_sql(LogQuery(user_id=values["user_id"], limit=10)))
    [entries] = [row for row in plan if row["table"] == "service_logs"]
    assert entries["key"] == "ix_service_logs_user_requests", plan
    assert entries["type"] == "ref", plan
    assert "Using index" in (entries["Extra"] or ""), plan
    (read,) = [row for row in plan if row["table"] == "l"]
    assert (read["type"], read["key"]) == ("eq_ref", "PRIMARY"), plan


@pytest.mark.parametrize("deep", [False, True])
def test_a_users_requests_are_read_in_index_order(
    loaded: tuple[pymysql.Connection, dict[str, Any]], deep: bool
) -> None:
    """GET /v1/users/{user_id}/requests walks the index forwards: no sort, and from a cursor
    a range that starts at it."""
    conn, values = loaded
    cursor = RequestCursor(END - timedelta(days=10), "web-1", 5, 7) if deep else None
    plan = explain(conn, *build_requests_sql(RequestsQuery(values["user_id"], 10, cursor)))
    assert_no_table_scan(plan)
    [read] = plan
    assert read["key"] == "ix_service_logs_user_requests", plan
    assert read["type"] == ("range" if deep else "ref"), plan
    assert "filesort" not in (read["Extra"] or ""), plan
