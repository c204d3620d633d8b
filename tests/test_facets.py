"""GET /v1/logs/facets against real MariaDB: every count against an oracle (the matching rows
counted in Python) on data stored by the real writer (redeliveries and two replicas included),
for every filter kind; the sample's cap (counts of the newest rows, complete=false), the
rollup's exact service and severity counts beside a capped sample, and bad input (422)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from lms.query.facets import DEFAULT_FIELDS, FACET_FIELDS
from tests.conftest import query_client, query_settings, seeded_query_database
from tests.helpers import stored_logs
from tests.test_analytics_volume import _COLUMNS as _VOLUME_FILTERS
from tests.test_analytics_volume import RULES, _admin, _bodies

pytestmark = pytest.mark.integration

ROWS = 2000
_COLUMNS = {name: "`commit`" if name == "commit" else name for name in FACET_FIELDS}
_FILTERS = _VOLUME_FILTERS


@pytest.fixture(scope="module")
def facets_db() -> Iterator[str]:
    logs = lambda: stored_logs(_bodies(ROWS, seed=17), RULES)  # noqa: E731
    with seeded_query_database("lms_test_facets_", logs) as name:
        yield name


@contextlib.asynccontextmanager
async def _client(database: str, max_rows: int) -> AsyncIterator[httpx.AsyncClient]:
    settings = query_settings(database).model_copy(update={"facets_max_rows": max_rows})
    async with query_client(settings) as c:
        yield c


@pytest.fixture
async def api(facets_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(facets_db, 100_000) as client:
        yield client


@pytest.fixture
async def capped(facets_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(facets_db, 300) as client:
        yield client


def rows_of(
    database: str, filters: dict[str, Any], newest: int | None = None
) -> list[dict[str, Any]]:
    """The matching rows' facet fields, newest first (all, or the `newest` ones)."""
    where, args = ["1 = 1"], []
    for name, column in _FILTERS.items():
        if name in filters:
            where.append(f"{column} = %s")
            args.append(filters[name])
    if "severity" in filters:
        severities = filters["severity"]
        severities = [severities] if isinstance(severities, str) else severities
        where.append(f"severity IN ({', '.join(['%s'] * len(severities))})")
        args += severities
    if "q" in filters:  # one plain word in these tests
        where.append("payload REGEXP %s")
        args.append(rf"\b{filters['q']}\b")
    for name, op in (("from", ">="), ("to", "<")):
        if name in filters:
            where.append(f"`timestamp` {op} %s")
            args.append(filters[name].rstrip("Z").replace("T", " "))
    columns = ", ".join(f"{c} AS {n}" for n, c in _COLUMNS.items())
    sql = f"SELECT {columns} FROM service_logs WHERE {' AND '.join(where)}"
    sql += " ORDER BY `timestamp` DESC, id DESC"
    if newest is not None:
        sql += f" LIMIT {newest}"
    with _admin(database) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def top(rows: list[dict[str, Any]], field: str, limit: int = 10) -> list[dict[str, Any]]:
    """The oracle: the field's non-null values counted, most frequent first, ties by value
    (by code point, as utf8mb4_bin compares)."""
    counts = Counter(str(row[field]) for row in rows if row[field] is not None)
    ranked = sorted(counts.items(), key=lambda p: (-p[1], p[0]))
    return [{"value": v, "count": n} for v, n in ranked[:limit]]


async def facets(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/logs/facets", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_every_field_without_filters_is_exact(api: httpx.AsyncClient, facets_db: str) -> None:
    rows = rows_of(facets_db, {})
    body = await facets(api, fields=",".join(FACET_FIELDS), limit=100)
    assert body["complete"] is True
    assert body["scanned"] == len(rows)
    assert set(body["facets"]) == set(FACET_FIELDS)
    for field in FACET_FIELDS:
        assert body["facets"][field] == top(rows, field, 100), field
    # The seed has these fields; an oracle of empty lists would prove nothing.
    assert all(body["facets"][field] for field in FACET_FIELDS)


async def test_default_fields_and_limit(api: httpx.AsyncClient, facets_db: str) -> None:
    rows = rows_of(facets_db, {})
    body = await facets(api)
    assert list(body["facets"]) == list(DEFAULT_FIELDS)
    body = await facets(api, fields="resource_id", limit=2)
    assert body["facets"] == {"resource_id": top(rows, "resource_id", 2)}
    assert len(body["facets"]["resource_id"]) == 2


FILTERS: list[dict[str, Any]] = [
    {"service": "billing"},
    {"severity": "error"},
    {"severity": ["warn", "fatal"]},
    {"service": "api", "severity": "info"},
    {"from": "2026-03-10T06:30:00Z", "to": "2026-03-20T00:00:00Z"},
    {"service": "worker", "from": "2026-10-25T00:10:00.5Z"},
    {"resource_id": "api-1"},
    {"trace_id": "t2"},
    {"span_id": "s3"},
    {"commit": "c1"},
    {"parent_resource_id": "p0"},
    {"user_id": "2"},
    {"q": "zebra"},
    {"q": "zebra", "service": "api"},
    {"commit": "c0", "severity": ["error", "fatal"], "to": "2026-03-25T00:00:00Z"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f))
async def test_filters_against_the_oracle(
    api: httpx.AsyncClient, facets_db: str, filters: dict[str, Any]
) -> None:
    rows = rows_of(facets_db, filters)
    assert rows, "a filter that matches nothing proves little"
    body = await facets(api, fields=",".join(FACET_FIELDS), **filters)
    assert body["complete"] is True
    assert body["scanned"] == len(rows)
    for field in FACET_FIELDS:
        assert body["facets"][field] == top(rows, field), (field, filters)


async def test_a_pattern_filter(api: httpx.AsyncClient, facets_db: str) -> None:
    with _admin(facets_db) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pattern_id, COUNT(*) AS n FROM service_logs GROUP BY pattern_id"
            " ORDER BY n DESC LIMIT 1"
        )
        ((pattern, _n),) = cur.fetchall()
        cur.execute(
            "SELECT service_name, resource_id FROM service_logs WHERE pattern_id = %s", (pattern,)
        )
        rows = [{"service_name": s, "resource_id": r} for s, r in cur.fetchall()]
    body = await facets(api, pattern=f"{pattern:016x}", fields="service_name,resource_id")
    assert (body["scanned"], body["complete"]) == (len(rows), True)
    assert body["facets"] == {f: top(rows, f) for f in ("service_name", "resource_id")}


async def test_nothing_matches(api: httpx.AsyncClient) -> None:
    body = await facets(api, service="no-such-service", fields="service_name,commit")
    assert body == {"facets": {"service_name": [], "commit": []}, "scanned": 0, "complete": True}
    body = await facets(api, service="no-such-service", fields="severity")
    assert body == {"facets": {"severity": []}, "scanned": 0, "complete": True}


@pytest.mark.parametrize("filters", [{}, {"commit": "c1"}, {"q": "zebra"}], ids=str)
async def test_the_cap_counts_the_newest_rows(
    capped: httpx.AsyncClient, facets_db: str, filters: dict[str, Any]
) -> None:
    assert len(rows_of(facets_db, filters)) > 300
    newest = rows_of(facets_db, filters, newest=300)
    body = await facets(capped, fields="resource_id,commit,user_id,trace_id", **filters)
    assert body["complete"] is False
    assert body["scanned"] == 300
    for field in ("resource_id", "commit", "user_id", "trace_id"):
        assert body["facets"][field] == top(newest, field), field


async def test_rollup_fields_stay_exact_beside_a_capped_sample(
    capped: httpx.AsyncClient, facets_db: str
) -> None:
    filters = {"severity": ["info", "warn"], "from": "2026-03-08T12:15:00Z"}
    every = rows_of(facets_db, filters)
    newest = rows_of(facets_db, filters, newest=300)
    body = await facets(capped, fields="service_name,severity,resource_id", **filters)
    assert body["facets"]["service_name"] == top(every, "service_name")
    assert body["facets"]["severity"] == top(every, "severity")
    assert body["facets"]["resource_id"] == top(newest, "resource_id")
    assert (body["scanned"], body["complete"]) == (300, False)
    # Only rollup fields: nothing sampled, every count exact.
    body = await facets(capped, fields="severity,service_name", **filters)
    assert (body["scanned"], body["complete"]) == (len(every), True)
    assert body["facets"]["service_name"] == top(every, "service_name")


async def test_a_sample_that_holds_exactly_every_match_is_complete(facets_db: str) -> None:
    filters = {"resource_id": "billing-0"}
    rows = rows_of(facets_db, filters)
    async with _client(facets_db, len(rows)) as client:
        body = await facets(client, fields="commit", **filters)
        assert (body["scanned"], body["complete"]) == (len(rows), True)
        assert body["facets"]["commit"] == top(rows, "commit")
    async with _client(facets_db, len(rows) - 1) as client:
        body = await facets(client, fields="commit", **filters)
        assert (body["scanned"], body["complete"]) == (len(rows) - 1, False)


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"fields": "service_name,bogus"}, "fields", "'bogus'"),
        ({"fields": "payload"}, "fields", "'payload'"),
        ({"fields": " , "}, "fields", "names no field"),
        ({"fields": ""}, "fields", "at least 1"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"limit": 101}, "limit", "less than or equal to 100"),
        ({"severity": "loud"}, "severity", "debug"),
        ({"service": "api "}, "service", "whitespace"),
        ({"from": "yesterday"}, "from", "RFC 3339"),
        ({"from": "2026-03-10T00:00:00Z", "to": "2026-03-09T00:00:00Z"}, "to", "later"),
        ({"q": "a"}, "q", "searchable"),
        ({"cursor": "x"}, "cursor", "Extra"),
    ],
)
async def test_bad_input_is_422_naming_the_parameter(
    api: httpx.AsyncClient, params: dict[str, Any], field: str, words: str
) -> None:
    response = await api.get("/v1/logs/facets", params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"][1] == field, detail
    assert words.lower() in detail[0]["msg"].lower(), detail
