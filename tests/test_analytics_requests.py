"""GET /v1/analytics/requests and `lms requests` against real MariaDB: the counts against a
COUNT(*) oracle over service_logs, on data stored by the real writer (redeliveries and two
replicas included), percentiles against a direct computation, each bucket size and the
daylight-saving days, users, the previous period, caching, bad input, the backfill of
migration 011 (the same rule in SQL as in Python) and the write path through the pipeline."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest

from lms.api.app import create_app
from lms.devtools.monitor_process import child_environment
from lms.devtools.resources import ensure_resources
from lms.domain.record import LogRecord, Rules, parse_message
from lms.domain.requests import (
    LATENCY_BOUNDS,
    PERCENTILE_ERROR,
    bin_value,
    fallback_route,
    percentiles,
    request_of,
)
from lms.query.requests import default_bucket
from lms.settings import Settings
from lms.store.migrations import MIGRATIONS, Migrator
from lms.store.request_rollup import RequestRollup
from tests.conftest import mysql_config, query_client, query_settings, seeded_query_database
from tests.helpers import db_query, rfc3339, stored_logs, wait_until
from tests.test_patterns_store import publish_keyed
from tests.test_pipeline import run_monitor  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration

SERVICES = ("api", "billing")
ROUTES = (
    ("GET", "/users/{id}"),
    ("POST", "/orders"),
    ("GET", "/health"),
    ("DELETE", "/orders/{id}"),
)
PATHS = ("/static/app.3f9a.css", "/items/42/reviews/7?page=2", "/about")
STATUSES = (200, 200, 200, 201, 204, 304, 400, 404, 404, 500, 503)
WINDOWS = (
    (datetime(2026, 3, 6), datetime(2026, 3, 31)),
    (datetime(2026, 10, 23), datetime(2026, 11, 3)),
)
RULES = Rules(clock=lambda: datetime(9999, 12, 31, tzinfo=UTC).timestamp())
ROWS = 3000
LMS = (sys.executable, "-m", "lms.cli")
NOT_REQUESTS: tuple[dict[str, Any], ...] = (
    {"http": {"route": "/x", "status_code": "200", "duration_ms": 3}},  # status as text
    {"http": {"route": "/x", "duration_ms": 3}},  # no status: gave up before a response
    {"http": {"route": "/x", "status_code": 200}},  # no duration
    {"http": {"route": "/x", "status_code": 700, "duration_ms": 3}},
    {"http": {"route": "/x", "status_code": 200.5, "duration_ms": 3}},
    {"http": {"route": "/x", "status_code": True, "duration_ms": 3}},
    {"http": {"route": "/x", "status_code": 200, "duration_ms": -1}},
    {"http": {"route": "/x", "status_code": 200, "duration_ms": "3"}},
    {"http": {"route": "", "status_code": 200, "duration_ms": 3}},  # no route nor path
    {"http": {"route": "  ", "status_code": 200, "duration_ms": 3}},
    {"http": {"route": 5, "path": "", "status_code": 200, "duration_ms": 3}},
    {"http": [200, 3]},
    {"http": "GET /x 200"},
    {"route": "/x", "status_code": 200, "duration_ms": 3},  # not under http
)
ODD_REQUESTS: tuple[dict[str, Any], ...] = (
    {"http": {"route": "/x", "status_code": 200.0, "duration_ms": 3}},  # integral number
    {"http": {"route": "/x", "status_code": 4e2, "duration_ms": 0}},
    {"http": {"route": "/y  ", "method": "GET ", "status_code": 200, "duration_ms": 1.189}},
    {"http": {"route": "/Y", "method": "GET", "status_code": 200, "duration_ms": 1.189}},
    {"http": {"route": None, "path": "/a/1b/c/d/e", "status_code": 200, "duration_ms": 2}},
    {"http": {"route": 5, "path": "/p?q=1/2", "method": 7, "status_code": 599, "duration_ms": 7}},
    {"http": {"route": "/é/" + "r" * 300, "method": "PROPFIND-LONG-METHOD", "status_code": 100,
              "duration_ms": 10**6}},
    {"http": {"path": "/x", "status_code": 200, "duration_ms": 0.499}, "user_id": "ü"},
)  # fmt: skip


def _metadata(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.7:
        method, route = rng.choice(ROUTES)
        path = route.replace("{id}", str(rng.randrange(1000)))
    else:
        method, route, path = "GET", None, rng.choice(PATHS)
    duration = round(rng.lognormvariate(3, 1.3), 3)
    if rng.random() < 0.02:
        duration = rng.choice((0.2, 70_000.0))
    http = {
        "method": method,
        "route": route,
        "path": path,
        "status_code": rng.choice(STATUSES),
        "duration_ms": duration,
        "outcome": "response",
    }
    meta: dict[str, Any] = {"http": http, "instance": "h:1", "seq": rng.randrange(10**6)}
    if rng.random() < 0.8:
        meta["user_id"] = rng.choice((rng.randrange(8), f"u-{rng.randrange(4)}"))
    return meta


def _bodies(count: int, seed: int = 11) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    odd = [*NOT_REQUESTS, *ODD_REQUESTS]
    out = []
    for i in range(count):
        start, end = rng.choice(WINDOWS)
        moment = start + (end - start) * rng.random()
        body: dict[str, Any] = {
            "service_name": rng.choice(SERVICES),
            "severity": "info",
            "payload": f"request {i}",
            "timestamp": rfc3339(moment),
        }
        if i < 4 * len(odd):
            body["metadata"] = odd[i % len(odd)]
        elif rng.random() < 0.85:
            body["metadata"] = _metadata(rng)
        out.append((f"m{i}", body))
    return out


def _admin(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(**mysql_config(), database=database, charset="utf8mb4", autocommit=True)


# --- the rule, without a database -----------------------------------------------------------


def test_what_counts_as_a_request() -> None:
    for meta in NOT_REQUESTS:
        assert request_of(json.dumps(meta, separators=(",", ":"))) is None, meta
    assert request_of(None) is None and request_of('{"x":1}') is None
    found = [request_of(json.dumps(m, separators=(",", ":"))) for m in ODD_REQUESTS]
    assert all(r is not None for r in found)
    assert [r.route for r in found if r] == [
        "/x", "/x", "/y", "/Y", "/a/{id}/c", "/p", ("/é/" + "r" * 300)[:255], "/x"
    ]  # fmt: skip
    assert [r.method for r in found if r][2:3] + [r.method for r in found if r][5:7] == [
        "GET",
        "",
        "PROPFIND-LONG-ME",
    ]
    assert [r.status for r in found if r][:2] == [200, 400]
    assert found[-1] is not None and found[-1].user_id == "ü" and found[-1].bin == 0
    assert found[2] is not None and found[2].bin == LATENCY_BOUNDS.index(1.189) + 1


def test_fallback_routes_bound_the_paths() -> None:
    assert fallback_route("/orders/123/items?x=1") == "/orders/{id}/items"
    assert fallback_route("/u/8f14e45f-ceea/avatar/large/x") == "/u/{id}/avatar"
    assert fallback_route("/users/alice") == "/users/alice"  # words only: kept
    assert len(fallback_route("/" + "a" * 400)) == 255


def test_percentiles_are_within_the_documented_error() -> None:
    rng = random.Random(3)
    for _ in range(200):
        values = [rng.lognormvariate(rng.uniform(0, 6), rng.uniform(0.1, 2)) for _ in range(50)]
        values = [min(max(v, 0.5), 65535.0) for v in values]
        histogram = [0] * (len(LATENCY_BOUNDS) + 1)
        for v in values:
            histogram[request_of(_meta(v)).bin] += 1  # type: ignore[union-attr]
        got = percentiles(histogram)
        ordered = sorted(values)
        for p, estimate in zip((50, 95, 99), got, strict=True):
            exact = ordered[-(-p * len(values) // 100) - 1]
            assert estimate is not None
            assert abs(estimate - exact) <= exact * PERCENTILE_ERROR + 0.001, (p, exact, estimate)
    assert PERCENTILE_ERROR < 0.091
    assert percentiles([0] * (len(LATENCY_BOUNDS) + 1)) == (None, None, None)
    assert bin_value(0) == 0.5 and bin_value(len(LATENCY_BOUNDS)) == 65536.0


def _meta(duration: float) -> str:
    return json.dumps({"http": {"route": "/r", "status_code": 200, "duration_ms": duration}})


# --- seeded through the real writer ---------------------------------------------------------


@dataclass
class Seeded:
    settings: Settings
    database: str
    client: httpx.AsyncClient

    async def get(self, **params: Any) -> dict[str, Any]:
        response = await self.client.get("/v1/analytics/requests", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def seeded_db() -> Iterator[str]:
    logs = lambda: stored_logs(_bodies(ROWS), RULES)  # noqa: E731
    with seeded_query_database("lms_test_requests_", logs) as name:
        yield name


@pytest.fixture
async def seeded(seeded_db: str) -> AsyncIterator[Seeded]:
    settings = query_settings(seeded_db)
    async with query_client(settings) as c:
        yield Seeded(settings, seeded_db, c)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)


_STATUS = "JSON_EXTRACT(l.metadata, '$.http.status_code')"
_DURATION = "JSON_EXTRACT(l.metadata, '$.http.duration_ms')"
_ROUTE = "JSON_EXTRACT(l.metadata, '$.http.route')"
_PATH = "JSON_EXTRACT(l.metadata, '$.http.path')"
_METHOD = "JSON_EXTRACT(l.metadata, '$.http.method')"
_IS_REQUEST = (
    f"JSON_TYPE({_STATUS}) IN ('INTEGER', 'DOUBLE') AND {_STATUS} + 0 BETWEEN 100 AND 599"
    f" AND {_STATUS} + 0 = FLOOR({_STATUS} + 0)"
    f" AND JSON_TYPE({_DURATION}) IN ('INTEGER', 'DOUBLE') AND {_DURATION} + 0 >= 0"
    f" AND ((JSON_TYPE({_ROUTE}) = 'STRING' AND CHAR_LENGTH(RTRIM(JSON_UNQUOTE({_ROUTE}))) > 0)"
    f" OR (JSON_TYPE({_PATH}) = 'STRING' AND CHAR_LENGTH(JSON_UNQUOTE({_PATH})) > 0))"
)
"""The request rule of lms.domain.requests, for the oracle."""

Key = tuple[int, str, str, str]
"""(bucket, service, route, method)."""


def _route_of(route: str | None, path: str | None) -> str:
    return route[:255].rstrip(" ") if route and route.rstrip(" ") else fallback_route(str(path))


def oracle(
    database: str, filters: dict[str, Any], starts: list[str], since: str, until: str
) -> tuple[dict[Key, list[int]], dict[Key, list[float]]]:
    """COUNT(*) of the request logs of service_logs per (bucket, service, route, method):
    [count, 4xx, 5xx], and every duration, the buckets being [start_i, start_i+1) cut to
    [since, until)."""
    bounds = [_parse(s) for s in starts] + [_parse(until)]
    bounds[0] = _parse(since)
    where, args = [_IS_REQUEST], []
    if "service" in filters:
        where.append("l.service_name = %s")
        args.append(filters["service"])
    with _admin(database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE bounds (i INT, lo DATETIME(6), hi DATETIME(6))")
        cur.executemany(
            "INSERT INTO bounds VALUES (%s, %s, %s)",
            [(i, bounds[i], bounds[i + 1]) for i in range(len(starts))],
        )
        cur.execute(
            f"SELECT b.i, l.service_name, JSON_UNQUOTE({_ROUTE}), JSON_UNQUOTE({_PATH}),"
            f" JSON_TYPE({_ROUTE}), JSON_TYPE({_METHOD}), JSON_UNQUOTE({_METHOD}), COUNT(*),"
            f" SUM({_STATUS} BETWEEN 400 AND 499), SUM({_STATUS} >= 500),"
            f" GROUP_CONCAT({_DURATION} + 0)"
            " FROM service_logs AS l JOIN bounds AS b ON l.`timestamp` >= b.lo"
            f" AND l.`timestamp` < b.hi WHERE {' AND '.join(where)} GROUP BY 1, 2, 3, 4, 5, 6, 7",
            args,
        )
        counts: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0])
        durations: dict[Key, list[float]] = defaultdict(list)
        for i, service, route, path, route_type, method_type, method, n, c4, c5, ds in cur:
            key = (
                int(i),
                service,
                _route_of(route if route_type == "STRING" else None, path),
                method[:16].rstrip(" ") if method_type == "STRING" else "",
            )
            if "route" in filters and key[2] != filters["route"]:
                continue
            if "method" in filters and key[3] != filters["method"]:
                continue
            for j, value in enumerate((n, c4, c5)):
                counts[key][j] += int(value)
            durations[key] += [float(d) for d in str(ds).split(",")]
    return counts, durations


def _exact_percentile(values: list[float], p: int) -> float:
    return sorted(values)[-(-p * len(values) // 100) - 1]


def _close(estimate: float | None, values: list[float], p: int) -> bool:
    exact = _exact_percentile(values, p)
    if exact < LATENCY_BOUNDS[0]:
        return estimate == LATENCY_BOUNDS[0]
    if exact >= LATENCY_BOUNDS[-1]:
        return estimate == LATENCY_BOUNDS[-1]
    return estimate is not None and abs(estimate - exact) <= exact * PERCENTILE_ERROR + 0.001


def check(
    answer: dict[str, Any],
    counts: dict[Key, list[int]],
    durations: dict[Key, list[float]],
) -> None:
    """Every figure of `answer` against the oracle's."""
    per_route: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    route_durations: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for (_i, *route), figures in counts.items():
        for j in range(3):
            per_route[tuple(route)][j] += figures[j]  # type: ignore[index]
    for (_i, *route), values in durations.items():
        route_durations[tuple(route)] += values  # type: ignore[index]
    everything = [d for values in durations.values() for d in values]
    totals = answer["totals"]
    assert [totals["count"], totals["count_4xx"], totals["count_5xx"]] == [
        sum(f[j] for f in per_route.values()) for j in range(3)
    ]
    if everything:
        assert totals["avg_ms"] == pytest.approx(sum(everything) / len(everything), abs=0.001)
        for p in (50, 95, 99):
            assert _close(totals[f"p{p}_ms"], everything, p), (p, totals)
    ranked = sorted(per_route, key=lambda k: (-per_route[k][0], k))
    limit = len(answer["routes"])
    assert [(r["service"], r["route"], r["method"]) for r in answer["routes"]] == ranked[:limit]
    for entry in answer["routes"]:
        key = (entry["service"], entry["route"], entry["method"])
        assert [entry["count"], entry["count_4xx"], entry["count_5xx"]] == per_route[key]
        assert entry["rate_5xx"] == entry["count_5xx"] / entry["count"]
        for p in (50, 95, 99):
            assert _close(entry[f"p{p}_ms"], route_durations[key], p), (key, p)
        for i, bucket in enumerate(entry["buckets"]):
            want = counts.get((i, *key), [0, 0, 0])  # type: ignore[arg-type]
            assert [bucket["count"], bucket["count_4xx"], bucket["count_5xx"]] == want, (key, i)
            values = durations.get((i, *key), [])  # type: ignore[arg-type]
            if not values:
                assert bucket["avg_ms"] is bucket["p95_ms"] is None
                continue
            assert bucket["avg_ms"] == pytest.approx(sum(values) / len(values), abs=0.001)
            assert _close(bucket["p99_ms"], values, 99)


SPRING = {"from": "2026-03-06T10:17:03.5Z", "to": "2026-03-31T13:41:00Z"}
FILTERS: list[dict[str, Any]] = [
    {},
    {"service": "billing"},
    {"route": "/users/{id}"},
    {"route": "/orders", "method": "POST", "service": "api"},
    {"method": "GET"},
    {"route": "/items/{id}/reviews"},  # a fallback route
    {"route": "/nowhere"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
async def test_every_count_is_what_count_star_counts(
    seeded: Seeded, filters: dict[str, Any]
) -> None:
    answer = await seeded.get(**SPRING, **filters, limit=16, bucket="hour")
    starts = [b["start"] for b in answer["routes"][0]["buckets"]] if answer["routes"] else []
    if not answer["routes"]:
        assert answer["totals"]["count"] == 0 and answer["totals"]["p50_ms"] is None
        return
    assert len(starts) == 24 * 25 + 4
    counts, durations = oracle(seeded.database, filters, starts, SPRING["from"], SPRING["to"])
    assert sum(f[0] for f in counts.values()) > 0
    check(answer, counts, durations)


@pytest.mark.parametrize(
    ("bucket", "tz", "since", "until"),
    [
        ("minute", "UTC", "2026-03-29T00:30:00Z", "2026-03-29T03:30:00.25Z"),
        ("hour", "Europe/Berlin", "2026-10-23T00:00:00Z", "2026-11-03T00:00:00Z"),
        ("day", "Europe/Berlin", "2026-03-06T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("day", "America/New_York", "2026-10-23T05:00:00Z", "2026-11-03T00:00:00Z"),
        ("day", "Asia/Kolkata", "2026-03-06T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("week", "America/New_York", "2026-03-06T00:00:00Z", "2026-03-31T00:00:00Z"),
        # UTC days: the series from the day tier, partial days and hours at both ends
        ("day", "UTC", SPRING["from"], SPRING["to"]),
        ("week", "UTC", "2026-03-06T23:00:00Z", "2026-10-30T00:00:01Z"),
    ],
)
async def test_each_bucket_size_and_zone(
    seeded: Seeded, bucket: str, tz: str, since: str, until: str
) -> None:
    answer = await seeded.get(**{"from": since, "to": until}, bucket=bucket, tz=tz, limit=20)
    starts = [b["start"] for b in answer["routes"][0]["buckets"]]
    counts, durations = oracle(seeded.database, {}, starts, since, until)
    check(answer, counts, durations)


async def test_daylight_saving_days_and_empty_ranges(seeded: Seeded) -> None:
    spring = await seeded.get(
        bucket="day", tz="Europe/Berlin",
        **{"from": "2026-03-28T00:00:00+01:00", "to": "2026-03-31T00:00:00+02:00"},
    )  # fmt: skip
    assert [b["start"] for b in spring["routes"][0]["buckets"]] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]
    empty = await seeded.get(**{"from": "2025-01-01T00:00:00Z", "to": "2025-01-01T06:00:00Z"})
    assert empty["routes"] == empty["slowest"] == empty["failing"] == empty["users"] == []
    assert empty["totals"] == {
        "count": 0, "count_4xx": 0, "count_5xx": 0, "rate_4xx": None, "rate_5xx": None,
        "avg_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None,
    }  # fmt: skip
    assert empty["since"] == "2025-01-01T00:00:00.000000Z" and "%" in empty["accuracy"]


async def test_slowest_failing_and_users(seeded: Seeded, seeded_db: str) -> None:
    answer = await seeded.get(**SPRING, limit=50, min_count=30, bucket="day")
    everything = [(r["service"], r["route"], r["method"]) for r in answer["routes"]]
    by_key = {(r["service"], r["route"], r["method"]): r for r in answer["routes"]}
    assert len(everything) < 50  # all routes are in `routes`
    enough = [k for k in everything if by_key[k]["count"] >= 30]
    assert [r["p95_ms"] for r in answer["slowest"]] == sorted(
        (by_key[k]["p95_ms"] for k in enough), reverse=True
    )
    assert {(r["service"], r["route"], r["method"]) for r in answer["slowest"]} == set(enough)
    rates = [(r["count_4xx"] + r["count_5xx"]) / r["count"] for r in answer["failing"]]
    assert rates == sorted(rates, reverse=True) and min(r["count"] for r in answer["failing"]) >= 30
    assert "buckets" not in answer["slowest"][0]
    # users: COUNT(*) and MAX(timestamp) of the request logs of each user in the range
    for filters in ({}, {"service": "api"}, {"route": "/health"}):
        users = (await seeded.get(**SPRING, **filters, users=100))["users"]
        where, args = [_IS_REQUEST, "l.user_id IS NOT NULL"], [_parse(SPRING["from"])]
        args.append(_parse(SPRING["to"]))
        if "service" in filters:
            where.append("l.service_name = %s")
            args.append(filters["service"])
        rows = await db_query(
            seeded.settings,
            "SELECT user_id, COUNT(*), MAX(`timestamp`) FROM service_logs AS l"
            f" WHERE `timestamp` >= %s AND `timestamp` < %s AND {' AND '.join(where)}"
            " GROUP BY user_id",
            args,
        )
        expected = sorted((-int(n), u, t) for u, n, t in rows)
        assert [(-u["count"], u["user_id"], _parse(u["last_seen"])) for u in users] == expected
        assert len(users) > 5
    top = (await seeded.get(**SPRING, users=2))["users"]
    assert len(top) == 2


async def test_a_cut_fold_is_read_unfolded(
    seeded: Seeded, seeded_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The top routes' series fold into one GROUP_CONCAT each (lms.query.fold): when the
    server cuts it at group_concat_max_len, the rows are read unfolded, to the same answer."""
    params = {**SPRING, "limit": 16, "bucket": "hour"}
    whole = await seeded.get(**params)
    monkeypatch.setattr("lms.query.reader.GROUP_CONCAT_MAX_LEN", 64)
    async with query_client(query_settings(seeded_db)) as client:
        assert await Seeded(seeded.settings, seeded_db, client).get(**params) == whole


def test_the_default_bucket_follows_the_range() -> None:
    start = datetime(2026, 3, 1)
    assert default_bucket(None, start) == "hour"  # the hour's default range: 1 day
    assert default_bucket(start, start + timedelta(days=14)) == "hour"
    assert default_bucket(start, start + timedelta(days=14, seconds=1)) == "day"
    assert default_bucket(start, start + timedelta(days=366)) == "day"
    assert default_bucket(start, start + timedelta(days=367)) == "week"
    assert default_bucket(start, None, start + timedelta(days=30)) == "day"


async def test_a_month_without_a_bucket_is_answered_per_day(seeded: Seeded) -> None:
    """The web UI asks for a month's 20 busiest routes without a bucket: hourly, that was
    20 x 600 route-buckets, beyond API_MAX_BUCKETS (422)."""
    answer = await seeded.get(**SPRING, limit=20)
    assert answer["bucket"] == "day"
    assert answer == await seeded.get(**SPRING, limit=20, bucket="day")
    assert len(answer["routes"][0]["buckets"]) == 26  # the 6th to the 31st of March
    short = await seeded.get(**{"from": "2026-03-06T00:00:00Z", "to": "2026-03-08T00:00:00Z"})
    assert short["bucket"] == "hour" and len(short["routes"][0]["buckets"]) == 48


async def test_compare_gives_the_period_just_before(seeded: Seeded) -> None:
    now = {"from": "2026-03-30T00:00:00+02:00", "to": "2026-03-31T00:00:00+02:00"}
    before = {"from": "2026-03-29T00:00:00+01:00", "to": "2026-03-30T00:00:00+02:00"}
    answer = await seeded.get(bucket="day", tz="Europe/Berlin", compare="previous", **now)
    alone = await seeded.get(bucket="day", tz="Europe/Berlin", **before)
    assert answer["previous"] == {k: v for k, v in alone.items() if k not in ("bucket", "tz")}
    assert "previous" not in alone


async def test_closed_ranges_are_cacheable(seeded: Seeded) -> None:
    url = "/v1/analytics/requests"
    closed = await seeded.client.get(url, params=SPRING)
    assert closed.headers["cache-control"] == "private, max-age=300"
    again = await seeded.client.get(
        url, params=SPRING, headers={"If-None-Match": closed.headers["etag"]}
    )
    assert again.status_code == 304
    open_ended = await seeded.client.get(url)
    assert open_ended.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("params", "field", "kind"),
    [
        ({"q": "x"}, "q", "extra_forbidden"),
        ({"trace_id": "t1"}, "trace_id", "extra_forbidden"),
        ({"severity": "error"}, "severity", "extra_forbidden"),
        ({"tz": "Mars/Olympus"}, "tz", "value_error"),
        ({"bucket": "fortnight"}, "bucket", "literal_error"),
        ({"compare": "next"}, "compare", "literal_error"),
        ({"limit": "0"}, "limit", "greater_than_equal"),
        ({"limit": "101"}, "limit", "less_than_equal"),
        ({"users": "0"}, "users", "greater_than_equal"),
        ({"min_count": "0"}, "min_count", "greater_than_equal"),
        ({"route": " /x"}, "route", "value_error"),
        ({"method": "G" * 17}, "method", "string_too_long"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "to", "value_error"),
        ({"bucket": "minute", "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
         "bucket", "too_many_buckets"),
    ],
)  # fmt: skip
async def test_bad_parameters_are_422_naming_them(
    seeded: Seeded, params: dict[str, str], field: str, kind: str
) -> None:
    response = await seeded.client.get("/v1/analytics/requests", params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"][-1] == field and detail["type"] == kind, detail


async def test_routes_over_the_cap_of_route_bucket_pairs(seeded_db: str) -> None:
    settings = query_settings(seeded_db).model_copy(update={"api_max_buckets": 100})
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        params = {"from": "2026-03-20T00:00:00Z", "to": "2026-03-22T00:00:00Z"}  # 48 hours
        response = await c.get("/v1/analytics/requests", params={**params, "limit": 3})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]
        response = await c.get("/v1/analytics/requests", params={**params, "limit": 2})
        assert response.status_code == 200


# --- migration 011: the same rule in SQL ----------------------------------------------------


def _rollup(
    database: str, days: bool = False
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rollups' rows, hourly or (`days`) daily, checked to be one per key."""
    suffix, time = ("_day", "day_start") if days else ("", "hour_start")
    with _admin(database) as conn, conn.cursor() as cur:
        bins = ", ".join(f"SUM(b{i:02d})" for i in range(len(LATENCY_BOUNDS) + 1))
        cur.execute(
            f"SELECT {time}, service_name, route, method, SUM(`count`), SUM(count_4xx),"
            f" SUM(count_5xx), ROUND(SUM(sum_ms), 3), {bins}, COUNT(*)"
            f" FROM request_rollup{suffix} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        )
        rows = cur.fetchall()
        assert all(int(r[-1]) == 1 for r in rows)  # one row per key
        routes = [(*r[:4], *map(int, r[4:7]), float(r[7]), *map(int, r[8:-1])) for r in rows]
        cur.execute(
            f"SELECT {time}, service_name, user_id, SUM(`count`), MAX(last_seen), COUNT(*)"
            f" FROM request_users{suffix} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        found = cur.fetchall()
        assert all(int(r[-1]) == 1 for r in found)
        users = [(*r[:3], int(r[3]), r[4]) for r in found]
    return routes, users


def _by_day(
    hourly: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Hourly rollup rows (as `_rollup` gives them) summed per UTC day, as the day tier's."""
    routes: dict[tuple[Any, ...], list[Any]] = {}
    for hour, *rest in hourly[0]:
        sums = routes.setdefault((hour.date(), *rest[:3]), [0] * len(rest[3:]))
        for i, value in enumerate(rest[3:]):
            sums[i] += value
    users: dict[tuple[Any, ...], tuple[int, datetime]] = {}
    for hour, service, user, count, last in hourly[1]:
        before, seen = users.get((hour.date(), service, user), (0, last))
        users[(hour.date(), service, user)] = (before + count, max(seen, last))
    return (
        [(*k, *v[:3], round(v[3], 3), *v[4:]) for k, v in sorted(routes.items())],
        [(*k, *v) for k, v in sorted(users.items())],
    )


def _same_tiers(database: str) -> None:
    """The day tier holds the hourly tier's sums per UTC day, both one row per key, and
    request_users_all_day the day tier's users summed over their services."""
    days, hours = _rollup(database, days=True), _by_day(_rollup(database))
    assert days[1] == hours[1] and len(days[0]) == len(hours[0])
    for got, want in zip(days[0], hours[0], strict=True):
        assert got[:7] == want[:7] and got[8:] == want[8:], got[:4]
        assert got[7] == pytest.approx(want[7], abs=0.01)
    every: dict[tuple[Any, ...], tuple[int, datetime]] = {}
    for day, _service, user, count, last in days[1]:
        before, seen = every.get((day, user), (0, last))
        every[(day, user)] = (before + count, max(seen, last))
    with _admin(database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT day_start, user_id, `count`, last_seen FROM request_users_all_day ORDER BY 1, 2"
        )
        found = [(*r[:2], int(r[2]), r[3]) for r in cur.fetchall()]
    assert found == [(*k, *v) for k, v in sorted(every.items())]  # sql/014: the service cut


def test_the_day_tier_is_the_hours_summed_per_day(seeded_db: str) -> None:
    """Written by the real writer, redeliveries and a second replica's copies included."""
    _same_tiers(seeded_db)


async def test_migration_backfills_what_the_writer_would_write(
    mysql_database: str, tmp_path: Path
) -> None:
    """Rows stored before 011, the edge cases of the rule included, are backfilled with the
    very rows the writer's Python rule gives; a re-run of the backfill adds nothing."""
    settings = query_settings(mysql_database)
    before = tmp_path / "sql"
    before.mkdir()
    for item in MIGRATIONS.iterdir():
        if item.name.endswith(".sql") and item.name < "011":
            (before / item.name).write_text(item.read_text())
    await Migrator(settings, before).migrate()
    records = []
    for message_id, body in _bodies(1200, seed=5):
        record = parse_message(json.dumps(body).encode(), RULES)
        assert isinstance(record, LogRecord)
        records.append((message_id, record))
    columns = "idempotency_key, message_id, batch_id, service_name, payload, severity,"
    columns += " `timestamp`, metadata"
    with _admin(mysql_database) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO service_logs ({columns}) VALUES (%s, %s, 1, %s, %s, %s, %s, %s)",
            [
                (m, m, r.service_name, r.payload, r.severity, r.timestamp, r.metadata)
                for m, r in records
            ],
        )
    applied = await Migrator(settings).migrate()
    assert applied[0] == "011_request_rollup.sql"  # (and the later ones)
    expected = RequestRollup()
    for _m, r in records:
        found = request_of(r.metadata)
        if found is not None:
            expected.add(r, found)
    routes, users = _rollup(mysql_database)
    want_routes = [
        (datetime.fromisoformat(h), s, rt, m, c, c4, c5, round(ms, 3), *bins)
        for (h, s, rt, m, c, c4, c5, ms, *bins) in expected.route_rows()
    ]
    assert len(routes) == len(want_routes) > 100
    for got, want in zip(routes, want_routes, strict=True):
        assert got[:7] == want[:7] and got[8:] == tuple(want[8:]), (got[:4], want[:4])
        assert float(got[7]) == pytest.approx(want[7], abs=0.01)
    want_users = [
        (datetime.fromisoformat(h), s, u, c, datetime.fromisoformat(str(t)))
        for (h, s, u, c, t) in expected.user_rows()
    ]
    assert users == want_users and len(users) > 50
    statements = (MIGRATIONS / "011_request_rollup.sql").read_text()
    lines = [line for line in statements.splitlines() if not line.lstrip().startswith("--")]
    backfills = [s for s in "\n".join(lines).split(";") if s.strip().startswith("INSERT")]
    assert len(backfills) == 4
    _same_tiers(mysql_database)
    day_rows = _rollup(mysql_database, days=True)
    with _admin(mysql_database) as conn, conn.cursor() as cur:
        for statement in backfills:  # as a re-run would
            cur.execute(statement)
    assert _rollup(mysql_database) == (routes, users)
    assert _rollup(mysql_database, days=True) == day_rows


# --- the write path, through Pub/Sub and two monitors ---------------------------------------


async def test_two_replicas_and_redeliveries_through_the_pipeline(settings, run_monitor) -> None:  # noqa: F811
    s = settings(batchsize=50, flushinterval=0.3)
    await Migrator(s).migrate()
    await ensure_resources(s)
    run_monitor(s), run_monitor(s)
    unique = _bodies(800, seed=9)
    await publish_keyed(s, unique + unique[::4])  # 200 published twice

    async def stored() -> bool:
        rows = await db_query(s, "SELECT COUNT(*) FROM service_logs")
        return int(rows[0][0]) == 800

    await wait_until(stored, timeout=90, interval=0.3, message="all 800 stored")
    stamped = [
        (_parse(b["timestamp"]), request_of(json.dumps(b["metadata"])))
        for _m, b in unique
        if "metadata" in b
    ]
    requests = [r for _t, r in stamped]
    sums = await db_query(s, "SELECT SUM(`count`), SUM(count_5xx) FROM request_rollup")
    found = [r for r in requests if r is not None]
    assert (int(sums[0][0]), int(sums[0][1])) == (len(found), sum(r.status >= 500 for r in found))
    users = Counter(r.user_id for r in found if r.user_id is not None)
    rows = await db_query(s, "SELECT user_id, SUM(`count`) FROM request_users GROUP BY user_id")
    assert {u: int(n) for u, n in rows} == dict(users)
    _same_tiers(s.mysql_database)
    app = create_app(s.model_copy(update={"api_ingest": False, "api_allowed_hosts": "*"}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
    ):
        for window in WINDOWS:
            params = {"from": rfc3339(window[0]), "to": rfc3339(window[1] + timedelta(days=1))}
            response = await c.get("/v1/analytics/requests", params={**params, "bucket": "day"})
            assert response.status_code == 200
            body = response.json()
            in_window = [r for t, r in stamped if r is not None and window[0] <= t < window[1]]
            assert body["totals"]["count"] == len(in_window)


# --- `lms requests` -------------------------------------------------------------------------


def _lms(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LMS, *args],
        env=child_environment(settings, {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_prints_what_the_api_answers(seeded: Seeded) -> None:
    args = ["requests", "--from", SPRING["from"], "--to", SPRING["to"], "--bucket", "day"]
    printed = _lms(seeded.settings, *args, "--json", "--compare", "--service", "api")
    assert printed.returncode == 0, printed.stderr
    served = await seeded.get(**SPRING, service="api", bucket="day", compare="previous")
    assert json.loads(printed.stdout) == served
    table = _lms(seeded.settings, *args)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["SERVICE", "ROUTE", "COUNT"]
    assert "slowest (p95)" in table.stdout and "9.1%" in table.stdout
    bad = _lms(seeded.settings, "requests", "--limit", "500")
    assert bad.returncode == 2 and "limit:" in bad.stderr
