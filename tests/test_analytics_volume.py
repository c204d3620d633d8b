"""GET /v1/analytics/volume and /errors against real MariaDB: every count against a COUNT(*)
oracle over service_logs, on data stored by the real writer (redeliveries and two replicas
included), the daylight-saving days of two zones, the previous period, caching, bad input,
commit_rollup against COUNT(*) key by key, and the rollups' backfill by migrations 010 and
015."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest

from lms.api.app import create_app
from lms.devtools.monitor_process import child_environment
from lms.domain.record import Rules
from lms.settings import Settings
from lms.store.migrations import MIGRATIONS, Migrator
from tests.conftest import mysql_config, query_client, query_settings, seeded_query_database
from tests.helpers import rfc3339, stored_logs

pytestmark = pytest.mark.integration

SERVICES = ("api", "billing", "worker")
SEVERITIES = ("debug", "info", "warn", "error", "fatal")
WINDOWS = (  # both zones' spring and autumn changes, and a quiet stretch between
    (datetime(2026, 3, 6), datetime(2026, 3, 31)),
    (datetime(2026, 10, 23), datetime(2026, 11, 3)),
)
RULES = Rules(clock=lambda: datetime(9999, 12, 31, tzinfo=UTC).timestamp())
ROWS = 3000
LMS = str(Path(sys.executable).with_name("lms"))


def _bodies(count: int, seed: int = 16) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        start, end = rng.choice(WINDOWS)
        moment = start + (end - start) * rng.random()
        service = rng.choice(SERVICES)
        body: dict[str, Any] = {
            "service_name": service,
            "severity": rng.choices(SEVERITIES, (2, 10, 3, 2, 1))[0],
            "payload": f"request {i} " + rng.choice(["served", "zebra crossing", "timed out"]),
            "timestamp": rfc3339(moment.replace(tzinfo=UTC)),
            "resource_id": f"{service}-{rng.randrange(3)}",
        }
        commit = rng.randrange(5)
        if commit < 4:  # a fifth have none (and no commit_rollup row)
            body["commit"] = f"c{commit % 2}"
        if rng.random() < 0.5:
            body["trace_id"] = f"t{rng.randrange(5)}"
            body["span_id"] = f"s{rng.randrange(20)}"
        if rng.random() < 0.5:
            body["metadata"] = {
                "parentResourceId": f"p{rng.randrange(2)}",
                "user_id": rng.randrange(4),
            }
        out.append((f"m{i}", body))
    return out


def _admin(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(**mysql_config(), database=database, charset="utf8mb4", autocommit=True)


@dataclass
class Seeded:
    settings: Settings
    client: httpx.AsyncClient

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get(f"/v1/analytics/{path}", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def seeded_db() -> Iterator[str]:
    with seeded_query_database(
        "lms_test_volume_", lambda: stored_logs(_bodies(ROWS), RULES)
    ) as name:
        yield name


@pytest.fixture
async def seeded(seeded_db: str) -> AsyncIterator[Seeded]:
    settings = query_settings(seeded_db)
    async with query_client(settings) as c:
        yield Seeded(settings, c)


# --- the oracle ---------------------------------------------------------------------------

_COLUMNS = {
    "service": "service_name",
    "resource_id": "resource_id",
    "trace_id": "trace_id",
    "span_id": "span_id",
    "commit": "`commit`",
    "parent_resource_id": "parent_resource_id",
    "user_id": "user_id",
}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)


def oracle(
    database: str, filters: dict[str, Any], starts: list[str], since: str, until: str
) -> dict[tuple[int, str, str], int]:
    """COUNT(*) of service_logs per (bucket, service, severity), the buckets being
    [start_i, start_i+1) cut to [since, until), joined from a table of their bounds."""
    bounds = [_parse(s) for s in starts] + [_parse(until)]
    bounds[0] = _parse(since)
    where, args = ["1 = 1"], []
    for name, column in _COLUMNS.items():
        if name in filters:
            where.append(f"l.{column} = %s")
            args.append(filters[name])
    severities = filters.get("severity")
    if severities:
        severities = [severities] if isinstance(severities, str) else severities
        where.append(f"l.severity IN ({', '.join(['%s'] * len(severities))})")
        args += severities
    if "q" in filters:  # one plain word in these tests
        where.append("l.payload REGEXP %s")
        args.append(rf"\b{filters['q']}\b")
    if "pattern" in filters:  # the API's 16 hex digits
        where.append("l.pattern_id = %s")
        args.append(int(filters["pattern"], 16))
    with _admin(database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE bounds (i INT, lo DATETIME(6), hi DATETIME(6))")
        cur.executemany(
            "INSERT INTO bounds VALUES (%s, %s, %s)",
            [(i, bounds[i], bounds[i + 1]) for i in range(len(starts))],
        )
        cur.execute(
            "SELECT b.i, l.service_name, l.severity, COUNT(*) FROM service_logs AS l JOIN bounds"
            " AS b ON l.`timestamp` >= b.lo AND l.`timestamp` < b.hi"
            f" WHERE {' AND '.join(where)} GROUP BY b.i, l.service_name, l.severity",
            args,
        )
        return {(int(i), s, v): int(n) for i, s, v, n in cur.fetchall()}


def check_volume(answer: dict[str, Any], expected: dict[tuple[int, str, str], int]) -> None:
    for i, bucket in enumerate(answer["buckets"]):
        want = {
            v: sum(n for (j, _s, w), n in expected.items() if j == i and w == v) for v in SEVERITIES
        }
        assert bucket["counts"] == want, (i, bucket)
        assert bucket["total"] == sum(want.values())
    assert answer["total"] == sum(expected.values())


def check_errors(answer: dict[str, Any], expected: dict[tuple[int, str, str], int]) -> None:
    services = {s for (_i, s, _v) in expected}
    assert sorted(s["service"] for s in answer["services"]) == sorted(services)
    assert answer["other"] == {"services": 0, "total": 0, "errors": 0, "rate": None}
    ranked = [(-s["errors"], s["service"]) for s in answer["services"]]
    assert ranked == sorted(ranked)
    for entry in answer["services"]:
        name = entry["service"]
        for i, bucket in enumerate(entry["buckets"]):
            total = sum(n for (j, s, _v), n in expected.items() if (j, s) == (i, name))
            errors = sum(
                n
                for (j, s, v), n in expected.items()
                if (j, s) == (i, name) and v in ("error", "fatal")
            )
            assert (bucket["total"], bucket["errors"]) == (total, errors), (name, i)
            assert bucket["rate"] == (errors / total if total else None)
        assert entry["errors"] == sum(b["errors"] for b in entry["buckets"])


SPRING = {"from": "2026-03-06T10:17:03.5Z", "to": "2026-03-31T13:41:00Z"}
FILTERS: list[dict[str, Any]] = [
    {},
    {"service": "billing"},
    {"severity": "error"},
    {"severity": ["error", "fatal"], "service": "api"},
    {"resource_id": "worker-1"},
    {"trace_id": "t3"},
    {"span_id": "s7"},
    {"commit": "c1"},
    {"commit": "c0", "service": "billing", "severity": ["warn", "error", "fatal"]},
    {"parent_resource_id": "p0"},
    {"user_id": "2"},
    {"q": "zebra"},
    {"q": "zebra", "service": "api", "severity": "info"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
async def test_every_filter_counts_what_count_star_counts(
    seeded: Seeded, seeded_db: str, filters: dict[str, Any]
) -> None:
    await check_filter(seeded, seeded_db, filters)


async def test_a_pattern_filter_counts_what_count_star_counts(
    seeded: Seeded, seeded_db: str
) -> None:
    """`pattern` is no column of the rollup: whole hours must not come from it."""
    with _admin(seeded_db) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pattern_id FROM service_logs GROUP BY pattern_id ORDER BY COUNT(*) DESC LIMIT 1"
        )
        ((pattern,),) = cur.fetchall()
    await check_filter(seeded, seeded_db, {"pattern": f"{pattern:016x}"})
    await check_filter(seeded, seeded_db, {"pattern": f"{pattern:016x}", "service": "api"})


async def check_filter(seeded: Seeded, seeded_db: str, filters: dict[str, Any]) -> None:
    params = {**SPRING, **filters, "bucket": "hour"}
    answer = await seeded.get("volume", **params)
    starts = [b["start"] for b in answer["buckets"]]
    assert len(starts) == 24 * 25 + 4  # 10:00 on the 6th to 13:00 on the 31st
    expected = oracle(seeded_db, filters, starts, SPRING["from"], SPRING["to"])
    assert sum(expected.values()) > 0
    check_volume(answer, expected)
    check_errors(await seeded.get("errors", **params), expected)


@pytest.mark.parametrize(
    ("bucket", "tz", "since", "until"),
    [
        ("minute", "UTC", "2026-03-29T00:30:00Z", "2026-03-29T03:30:00.25Z"),
        ("hour", "Europe/Berlin", "2026-10-23T00:00:00Z", "2026-11-03T00:00:00Z"),
        ("day", "Europe/Berlin", "2026-03-06T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("day", "America/New_York", "2026-10-23T05:00:00Z", "2026-11-03T00:00:00Z"),
        ("day", "Asia/Kolkata", "2026-03-06T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("week", "America/New_York", "2026-03-06T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("week", "UTC", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ],
)
@pytest.mark.parametrize("filters", [{}, {"service": "worker"}, {"commit": "c0"}], ids=str)
async def test_each_bucket_size_and_zone(
    seeded: Seeded,
    seeded_db: str,
    bucket: str,
    tz: str,
    since: str,
    until: str,
    filters: dict[str, Any],
) -> None:
    params = {"from": since, "to": until, "bucket": bucket, "tz": tz, **filters}
    answer = await seeded.get("volume", **params)
    starts = [b["start"] for b in answer["buckets"]]
    expected = oracle(seeded_db, filters, starts, since, until)
    check_volume(answer, expected)
    check_errors(await seeded.get("errors", **params), expected)


def _hours(starts: list[str], until: str) -> list[float]:
    moments = [_parse(s) for s in starts] + [_parse(until)]
    return [(b - a) / timedelta(hours=1) for a, b in pairwise(moments)]


async def test_daylight_saving_days_are_23_and_25_hours(seeded: Seeded) -> None:
    spring = await seeded.get(
        "volume", bucket="day", tz="Europe/Berlin",
        **{"from": "2026-03-28T00:00:00+01:00", "to": "2026-03-31T00:00:00+02:00"},
    )  # fmt: skip
    starts = [b["start"] for b in spring["buckets"]]
    assert starts == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]
    assert _hours(starts, "2026-03-31T00:00:00+02:00") == [24, 23, 24]
    autumn = await seeded.get(
        "volume", bucket="day", tz="America/New_York",
        **{"from": "2026-10-31T00:00:00-04:00", "to": "2026-11-02T00:00:00-05:00"},
    )  # fmt: skip
    starts = [b["start"] for b in autumn["buckets"]]
    assert starts == ["2026-10-31T00:00:00-04:00", "2026-11-01T00:00:00-04:00"]
    assert _hours(starts, "2026-11-02T00:00:00-05:00") == [24, 25]
    hours = await seeded.get(
        "volume", bucket="hour", tz="Europe/Berlin",
        **{"from": "2026-10-25T00:00:00+02:00", "to": "2026-10-26T00:00:00+01:00"},
    )  # fmt: skip
    assert len(hours["buckets"]) == 25
    assert [b["start"] for b in hours["buckets"][2:4]] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
    ]
    week = await seeded.get(
        "volume", bucket="week", tz="America/New_York",
        **{"from": "2026-03-10T12:00:00Z", "to": "2026-03-20T00:00:00Z"},
    )  # fmt: skip
    assert [b["start"] for b in week["buckets"]] == [
        "2026-03-09T00:00:00-04:00",
        "2026-03-16T00:00:00-04:00",
    ]


async def test_an_empty_range_has_zero_buckets(seeded: Seeded) -> None:
    params = {"from": "2025-01-01T00:00:00Z", "to": "2025-01-01T06:00:00Z", "bucket": "hour"}
    answer = await seeded.get("volume", **params)
    assert answer["total"] == 0
    assert len(answer["buckets"]) == 6
    assert all(b["total"] == 0 and set(b["counts"].values()) == {0} for b in answer["buckets"])
    assert answer["buckets"][0]["start"] == "2025-01-01T00:00:00Z"
    assert (await seeded.get("errors", **params))["services"] == []
    none = await seeded.get("volume", **SPRING, service="no-such-service")
    assert none["total"] == 0 and len(none["buckets"]) == 604


async def test_compare_gives_the_period_just_before(seeded: Seeded) -> None:
    now = {"from": "2026-03-30T00:00:00+02:00", "to": "2026-03-31T00:00:00+02:00"}
    before = {"from": "2026-03-29T00:00:00+01:00", "to": "2026-03-30T00:00:00+02:00"}
    for path in ("volume", "errors"):
        answer = await seeded.get(path, bucket="day", tz="Europe/Berlin", compare="previous", **now)
        alone = await seeded.get(path, bucket="day", tz="Europe/Berlin", **before)
        assert answer["previous"] == {k: v for k, v in alone.items() if k not in ("bucket", "tz")}
        assert answer["previous"]["from"] == "2026-03-28T23:00:00.000000Z"  # 23 hours
    hours = await seeded.get(
        "volume", bucket="hour", compare="previous",
        **{"from": "2026-03-20T10:00:00Z", "to": "2026-03-20T13:00:00Z"},
    )  # fmt: skip
    alone = await seeded.get(
        "volume", bucket="hour", **{"from": "2026-03-20T07:00:00Z", "to": "2026-03-20T10:00:00Z"}
    )
    assert hours["previous"]["buckets"] == alone["buckets"]
    assert "previous" not in alone


async def test_closed_ranges_are_cacheable_and_revalidated(seeded: Seeded) -> None:
    url = "/v1/analytics/volume"
    closed = await seeded.client.get(url, params=SPRING)
    assert closed.headers["cache-control"] == "private, max-age=300"
    etag = closed.headers["etag"]
    again = await seeded.client.get(url, params=SPRING, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    weak = await seeded.client.get(url, params=SPRING, headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    other = await seeded.client.get(url, params={**SPRING, "service": "api"})
    assert other.headers["etag"] != etag
    stale = await seeded.client.get(
        url, params={**SPRING, "service": "api"}, headers={"If-None-Match": etag}
    )
    assert stale.status_code == 200
    future = rfc3339(datetime.now(UTC) + timedelta(hours=1))
    for params in ({}, {"from": SPRING["from"], "to": future, "bucket": "day"}):
        response = await seeded.client.get("/v1/analytics/errors", params=params)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["server-timing"].startswith("db;dur=")


@pytest.mark.parametrize(
    ("params", "field", "kind"),
    [
        ({"tz": "Mars/Olympus"}, "tz", "value_error"),
        ({"tz": "../../etc/passwd"}, "tz", "value_error"),
        ({"bucket": "fortnight"}, "bucket", "literal_error"),
        ({"compare": "next"}, "compare", "literal_error"),
        ({"bucket": "minute", "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
         "bucket", "too_many_buckets"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "to", "value_error"),
        ({"from": "yesterday"}, "from", "value_error"),
        ({"service": " api"}, "service", "value_error"),
        ({"limit": "5"}, "limit", "extra_forbidden"),
        ({"top": "0"}, "top", "greater_than_equal"),
    ],
)  # fmt: skip
async def test_bad_parameters_are_422_naming_them(
    seeded: Seeded, params: dict[str, str], field: str, kind: str
) -> None:
    for path in ("errors",) if "top" in params else ("volume", "errors"):
        response = await seeded.client.get(f"/v1/analytics/{path}", params=params)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"][-1] == field and detail["type"] == kind, detail


async def test_errors_over_the_cap_of_service_bucket_pairs(seeded_db: str) -> None:
    settings = query_settings(seeded_db).model_copy(update={"api_max_buckets": 100})
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        params = {"from": "2026-03-20T00:00:00Z", "to": "2026-03-22T00:00:00Z"}
        assert (await c.get("/v1/analytics/volume", params=params)).status_code == 200
        response = await c.get("/v1/analytics/errors", params=params)  # 3 services x 48
        assert response.status_code == 422
        detail = response.json()["detail"][0]
        assert (detail["type"], detail["loc"]) == ("too_many_buckets", ["query", "top"])
        for narrowed in ({"service": "api"}, {"top": 2}):
            response = await c.get("/v1/analytics/errors", params={**params, **narrowed})
            assert response.status_code == 200
        top = response.json()
        assert [s["service"] for s in top["services"]] == [
            s["service"]
            for s in (
                await c.get("/v1/analytics/errors", params={**params, "bucket": "day"})
            ).json()["services"][:2]
        ]
        full = (await c.get("/v1/analytics/errors", params={**params, "bucket": "day"})).json()
        third = full["services"][2]
        assert top["other"] == {
            "services": 1,
            "total": third["total"],
            "errors": third["errors"],
            "rate": third["rate"],
        }


@pytest.mark.parametrize(
    ("migration", "table", "filters", "counted"),
    [
        ("010_volume_rollup.sql", "volume_rollup", {}, 600),
        ("015_commit_rollup.sql", "commit_rollup", {"commit": "c1"}, 400),  # no NULL commit
    ],
)
async def test_migration_backfills_the_rollup_from_existing_rows(
    mysql_database: str,
    tmp_path: Path,
    migration: str,
    table: str,
    filters: dict[str, str],
    counted: int,
) -> None:
    """Rows stored before `migration` are counted in `table`: the served answer (whole hours
    from the rollup, a partial hour at each end from service_logs) equals the oracle, and a
    re-run of the backfill (an interrupted migration) counts nothing twice."""
    settings = query_settings(mysql_database)
    before = tmp_path / "sql"
    before.mkdir()
    for item in MIGRATIONS.iterdir():
        if item.name.endswith(".sql") and item.name < migration:
            (before / item.name).write_text(item.read_text())
    await Migrator(settings, before).migrate()
    columns = (
        "idempotency_key, message_id, batch_id, service_name, payload, severity, `timestamp`,"
        " `commit`"
    )
    rows = [
        (f"k{i}", f"k{i}", 1, SERVICES[i % 3], "old", SEVERITIES[i % 5],
         datetime(2026, 3, 1) + timedelta(minutes=7 * i, microseconds=i),
         None if i % 3 == 2 else f"c{i % 3}")
        for i in range(600)
    ]  # fmt: skip
    with _admin(mysql_database) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO service_logs ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows
        )
    assert (await Migrator(settings).migrate())[0] == migration  # then later ones
    backfill = (MIGRATIONS / migration).read_text().split(";")[1]
    total = f"SELECT SUM(`debug` + `info` + `warn` + `error` + `fatal`) FROM {table}"
    with _admin(mysql_database) as conn, conn.cursor() as cur:
        cur.execute(total)
        assert int(cur.fetchone()[0]) == counted
        cur.execute(backfill.strip().replace("%", "%%"))  # as a re-run would
        cur.execute(total)
        assert int(cur.fetchone()[0]) == counted
    app = create_app(settings)
    since, until = "2026-03-01T00:20:00Z", "2026-03-03T22:30:00Z"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        answer = (
            await c.get("/v1/analytics/volume", params={"from": since, "to": until, **filters})
        ).json()
    expected = oracle(
        mysql_database, filters, [b["start"] for b in answer["buckets"]], since, until
    )
    check_volume(answer, expected)
    assert 0 < answer["total"] < counted


async def test_commit_rollup_holds_one_row_per_key_equal_to_count_star(seeded_db: str) -> None:
    """What the writer upserted (every batch redelivered, two replicas racing on one) is,
    key by key, COUNT(*) over service_logs; logs without a commit have no row."""
    severities = ", ".join(f"SUM(severity = '{s}')" for s in SEVERITIES)
    with _admin(seeded_db) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT `commit`, DATE_FORMAT(`timestamp`, '%Y-%m-%d %H:00:00'), service_name,"
            f" {severities} FROM service_logs WHERE `commit` IS NOT NULL"
            " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        logs = [tuple(map(str, row)) for row in cur.fetchall()]
        cur.execute(
            "SELECT `commit`, DATE_FORMAT(hour_start, '%Y-%m-%d %H:00:00'), service_name,"
            " `debug`, `info`, `warn`, `error`, `fatal` FROM commit_rollup ORDER BY 1, 2, 3"
        )
        rolled = [tuple(map(str, row)) for row in cur.fetchall()]
        cur.execute("SELECT COUNT(*) FROM service_logs WHERE `commit` IS NULL")
        assert int(cur.fetchone()[0]) > 0
    assert rolled == logs and len(logs) > 100


# --- `lms volume`, `lms errors` -----------------------------------------------------------


def _lms(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LMS, *args],
        env=child_environment(settings, {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_prints_what_the_api_answers(seeded: Seeded) -> None:
    window = ["--from", SPRING["from"], "--to", SPRING["to"]]
    for command in ("volume", "errors"):
        args = [command, *window, "--service", "api", "--bucket", "day", "--tz", "Europe/Berlin"]
        printed = _lms(seeded.settings, *args, "--json", "--compare")
        assert printed.returncode == 0, printed.stderr
        served = await seeded.get(
            command, service="api", bucket="day", tz="Europe/Berlin", compare="previous", **SPRING
        )
        assert json.loads(printed.stdout) == served
        table = _lms(seeded.settings, *args, "--compare")
        assert table.returncode == 0, table.stderr
        assert "CHANGE" in table.stdout.splitlines()[0]
    volume_table = _lms(seeded.settings, "volume", *window, "--bucket", "day").stdout.splitlines()
    assert volume_table[1].startswith("2026-03-06T00:00:00Z")
    assert volume_table[-1].split() == [
        "total",
        str((await seeded.get("volume", **SPRING))["total"]),
    ]
    bad = _lms(seeded.settings, "volume", "--tz", "Nowhere/Land")
    assert bad.returncode == 2 and "tz:" in bad.stderr
