"""Top patterns against the real parts: exact counts written by the batch transaction (with
duplicates, and two monitors sharing one subscription), GET /v1/analytics/patterns against
an oracle of COUNT(*) over service_logs, its 422s, GET /v1/logs?pattern=, `lms patterns` and
the migration of a database that holds rows."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lms.api.app import create_app
from lms.devtools.monitor_process import child_environment
from lms.devtools.resources import ensure_resources
from lms.devtools.seed import bulk_load
from lms.domain.patterns import pattern_hex, pattern_of
from lms.domain.record import LogRecord, Reason, Rejection, parse_message
from lms.ingest.sources.pubsub.client import publisher_client
from lms.ingest.sources.pubsub.keys import KEY_ATTRIBUTE
from lms.settings import Settings
from lms.store.errors import StorageError
from lms.store.migrations import MIGRATIONS, Migrator
from lms.store.writer import BatchWriter, StoredLog, StoredRejection
from tests.helpers import (
    db_query,
    pattern_oracles,
    same_rows,
    store_with_redeliveries,
    wait_until,
)
from tests.test_pipeline import run_monitor  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration

BASE = datetime(2026, 11, 30, 9, 0, 0)
SERVICES = ("api", "billing", "worker")
MESSAGES = (
    "user {n} failed to connect to db-{k}.internal:{port}",
    "GET /api/v1/orders/{n} 200 in {ms}ms",
    "cache miss key=session:{n}",
    "payment {uuid} declined",
    "worker started",
    "retry {k}/5 after {ms}ms",
)
LMS = (sys.executable, "-m", "lms.cli")
"""`lms`, of this checkout (the installed script may be of another)."""


def body(i: int, rng: random.Random, hours: int = 4, base: datetime = BASE) -> dict[str, Any]:
    """Log i: one of the templates, over `hours` hours from `base`, at uneven seconds."""
    text = rng.choice(MESSAGES).format(
        n=rng.randint(1, 10**6),
        k=rng.randint(1, 9),
        port=rng.choice((5432, 3306)),
        ms=rng.randint(1, 999),
        uuid=f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}",
    )
    stamp = base + timedelta(seconds=rng.randint(0, hours * 3600 - 1), microseconds=i)
    return {
        "service_name": SERVICES[i % 3],
        "severity": ("info", "warn", "error")[rng.randint(0, 2)],
        "payload": text,
        "timestamp": stamp.replace(tzinfo=UTC).isoformat(),
    }


def stored(i: int, data: dict[str, Any]) -> StoredLog:
    record = parse_message(json.dumps(data).encode())
    assert isinstance(record, LogRecord)
    return StoredLog(f"m{i}", record)


async def assert_exact(s: Settings) -> None:
    """Every pattern rollup tier equals COUNT(*) of service_logs per its key, and
    log_patterns holds each stored pattern with its template and an example."""
    for table, rows, logs in pattern_oracles():
        oracle = same_rows(await db_query(s, logs, ()))
        assert same_rows(await db_query(s, rows, ())) == oracle, table
        assert oracle, table
    oracle = await db_query(s, "SELECT DISTINCT pattern_id FROM service_logs")
    stored = await db_query(s, "SELECT pattern_id, template, first_seen FROM log_patterns")
    assert {int(r[0]) for r in stored} == {int(r[0]) for r in oracle}
    for pid, template, first_seen in stored:
        rows = await db_query(
            s, "SELECT payload, `timestamp` FROM service_logs WHERE pattern_id = %s", (pid,)
        )
        assert {pattern_of(payload) for payload, _ in rows} == {(int(pid), template)}
        assert first_seen in {stamp for _, stamp in rows}


async def test_duplicates_are_not_counted(settings) -> None:
    s = settings()
    await Migrator(s).migrate()
    rng = random.Random(1)
    logs = [stored(i, body(i, rng)) for i in range(300)]
    writer = BatchWriter(s)
    try:
        assert (await writer.write_batch(logs[:200], [])).new == 200
        assert (await writer.write_batch(logs[100:], [])).new == 100  # 100 duplicates
        assert (await writer.write_batch(logs[:50], [])).new == 0  # only duplicates
    finally:
        await writer.close()
    assert len(await db_query(s, "SELECT id FROM service_logs")) == 300
    await assert_exact(s)


async def test_a_rolled_back_batch_leaves_its_templates_unknown(settings) -> None:
    """A batch that fails after its pattern rows (here: a rejected message whose key is too
    long for its column) stores none of them; the writer must not take its templates as
    stored, or a later batch of the same pattern would leave log_patterns without it."""
    s = settings()
    await Migrator(s).migrate()
    rng = random.Random(5)
    first, again = stored(1, body(1, rng)), stored(2, body(1, random.Random(5)))
    assert pattern_of(first.record.payload) == pattern_of(again.record.payload)
    received = datetime(2026, 11, 30, 9, 0)
    too_long = StoredRejection("r1", Rejection(Reason.INVALID_JSON, "x"), b"x", received, "k" * 300)
    fine = StoredRejection("r2", Rejection(Reason.INVALID_JSON, "x"), b"x", received)
    writer = BatchWriter(s)
    try:
        with pytest.raises(StorageError):
            await writer.write_batch([first], [too_long])
        await writer.write_batch([], [fine])  # commits, without any log
        await writer.write_batch([again], [])
    finally:
        await writer.close()
    await assert_exact(s)


async def publish_keyed(s: Settings, bodies: list[tuple[str, dict[str, Any]]]) -> None:
    """Each body with its own producer key: a key published twice is a redelivery."""
    async with publisher_client(s) as client:
        for start in range(0, len(bodies), 500):
            chunk = [
                {"data": json.dumps(b).encode(), "attributes": {KEY_ATTRIBUTE: key}}
                for key, b in bodies[start : start + 500]
            ]
            await client.publish(topic=s.topic_path, messages=chunk)


async def test_two_replicas_and_redeliveries_count_exactly(settings, run_monitor) -> None:  # noqa: F811
    s = settings(batchsize=50, flushinterval=0.3)
    await Migrator(s).migrate()
    await ensure_resources(s)
    run_monitor(s), run_monitor(s)
    rng = random.Random(2)
    unique = [(f"k{i}", body(i, rng)) for i in range(1500)]
    await publish_keyed(s, unique + unique[::5])  # 300 published twice
    await wait_until(lambda: _count(s, 1500), timeout=90, interval=0.3, message="all 1500 stored")
    await assert_exact(s)
    await check_endpoint(s, unique)


async def _count(s: Settings, expected: int) -> bool:
    try:
        rows = await db_query(s, "SELECT COUNT(*) FROM service_logs")
    except Exception:
        return False
    return int(rows[0][0]) == expected


def expected_top(
    bodies: list[tuple[str, dict[str, Any]]],
    since: datetime | None,
    until: datetime | None,
    service: str | None = None,
    severities: tuple[str, ...] = (),
    bucket: str | None = None,
) -> Counter[Any]:
    """The oracle from the published bodies themselves: patterns counted in the range, per
    pattern, or with `bucket` (hour, day) per (pattern, RFC 3339 start of its UTC bucket)."""
    counts: Counter[Any] = Counter()
    for _, b in bodies:
        stamp = datetime.fromisoformat(b["timestamp"]).replace(tzinfo=None)
        if (since is not None and stamp < since) or (until is not None and stamp >= until):
            continue
        if service is not None and b["service_name"] != service:
            continue
        if severities and b["severity"] not in severities:
            continue
        pid = pattern_hex(pattern_of(b["payload"])[0])
        if bucket is None:
            counts[pid] += 1
        else:
            start = stamp.replace(minute=0, second=0, microsecond=0)
            start = start.replace(hour=0) if bucket == "day" else start
            counts[(pid, start.strftime("%Y-%m-%dT%H:%M:%S.000000Z"))] += 1
    return counts


def iso(moment: datetime) -> str:
    return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


async def check_endpoint(s: Settings, bodies: list[tuple[str, dict[str, Any]]]) -> None:
    app = create_app(s.model_copy(update={"api_ingest": False, "api_allowed_hosts": "*"}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
    ):
        m = timedelta(minutes=1)
        cases: list[dict[str, Any]] = [
            {"from": BASE, "to": BASE + 240 * m},  # whole hours: the rollup alone
            {"from": BASE + 17 * m + timedelta(seconds=3), "to": BASE + 221 * m},  # both edges
            {"from": BASE + 65 * m, "to": BASE + 110 * m},  # within one hour: the rows alone
            {"from": BASE + 30 * m, "to": BASE + 120 * m, "service": "api"},
            {
                "from": BASE,
                "to": BASE + timedelta(hours=2, seconds=1),
                "severity": ["error", "warn"],
            },
        ]
        await check_ranges(c, bodies, cases)
        top = (await c.get("/v1/analytics/patterns", params={"limit": 2, "bucket": "day"})).json()
        assert len(top["patterns"]) == 2
        whole = expected_top(bodies, BASE, BASE + timedelta(days=1))
        assert [p["count"] for p in top["patterns"]] == [n for _, n in whole.most_common(2)]
        assert [t["start"] for t in top["patterns"][0]["trend"]] == ["2026-11-30T00:00:00.000000Z"]
        # Click through: the logs of a pattern, and only those.
        first = top["patterns"][0]
        logs = (
            await c.get("/v1/logs", params={"pattern": first["pattern_id"], "limit": 1000})
        ).json()["logs"]
        assert len(logs) == first["count"]
        assert {pattern_hex(pattern_of(log["payload"])[0]) for log in logs} == {first["pattern_id"]}


async def check_ranges(
    c: httpx.AsyncClient, bodies: list[tuple[str, dict[str, Any]]], cases: list[dict[str, Any]]
) -> None:
    """Each case's answer (every pattern: limit 100) equals the oracle, count by count and
    trend bucket by trend bucket, most frequent first, with a matching example."""
    for case in cases:
        params = {k: iso(v) if isinstance(v, datetime) else v for k, v in case.items()}
        response = await c.get("/v1/analytics/patterns", params={**params, "limit": 100})
        assert response.status_code == 200, response.text
        found = response.json()["patterns"]
        since, until = case.get("from"), case.get("to")
        filters = (case.get("service"), tuple(case.get("severity", ())))
        oracle = expected_top(bodies, since, until, *filters)
        assert {p["pattern_id"]: p["count"] for p in found} == dict(oracle), case
        counts = [p["count"] for p in found]
        assert counts == sorted(counts, reverse=True)
        trends = expected_top(bodies, since, until, *filters, case.get("bucket", "hour"))
        for p in found:
            trend = {(p["pattern_id"], t["start"]): t["count"] for t in p["trend"]}
            assert +Counter(trend) == +Counter(
                {k: n for k, n in trends.items() if k[0] == p["pattern_id"]}
            ), case
            assert p["example"]["service_name"] == case.get("service", p["example"]["service_name"])
            assert pattern_hex(pattern_of(p["example"]["payload"])[0]) == p["pattern_id"]
            assert p["template"] == pattern_of(p["example"]["payload"])[1]


async def test_ranges_over_days_count_exactly(settings) -> None:
    """Logs over four days, stored with redeliveries and two racing writers: ranges made of
    whole days, whole hours and partial hours (mid-hour, mid-day, open ends), each tier and
    each filter, against the oracle. Time zones do not apply: the trend buckets are UTC."""
    s = settings(api_ingest=False, api_allowed_hosts="*")
    await Migrator(s).migrate()
    rng = random.Random(7)
    start = BASE - timedelta(days=10)  # 2026-11-20 09:00, four days in the past
    bodies = [(f"d{i}", body(i, rng, hours=80, base=start)) for i in range(3000)]
    await store_with_redeliveries(s, [stored(i, b) for i, (_, b) in enumerate(bodies)])
    await assert_exact(s)
    day = start.replace(hour=0) + timedelta(days=1)  # the first whole day
    m = timedelta(minutes=1)
    cases: list[dict[str, Any]] = [
        {"from": day, "to": day + timedelta(days=2)},  # whole days: the day tier alone
        {"from": day, "to": day + timedelta(days=2), "bucket": "day", "service": "api"},
        {"from": start + 17 * m + timedelta(seconds=3), "to": day + timedelta(days=1, hours=5)},
        {  # mid-hour and mid-day at both ends, each tier between
            "from": start + 17 * m + timedelta(seconds=3),
            "to": day + timedelta(days=2, hours=5, minutes=7),
            "bucket": "day",
        },
        {"from": start + 17 * m, "to": day + timedelta(days=2, minutes=7), "service": "billing"},
        {"from": start + 17 * m, "to": day + timedelta(days=2, minutes=7), "severity": ["warn"]},
        {"to": day + timedelta(hours=30, minutes=1)},  # open start
        {"from": day + timedelta(hours=3, microseconds=5), "bucket": "day"},  # open end
        {"from": day - 10 * m, "to": day + 20 * m, "service": "worker"},  # across midnight
        {"from": day + timedelta(hours=23), "to": day + timedelta(hours=26)},  # no whole day
        {"severity": ["error", "info"], "service": "api"},  # unbounded: all days
    ]
    app = create_app(s)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
    ):
        await check_ranges(c, bodies, cases)


def test_the_bulk_load_fills_the_rollups_as_the_writer_would(settings) -> None:
    """bench/query.py's table (lms.devtools.seed) has the rollups lms mon would have written."""
    s = settings()
    bulk_load(s.mysql_database, 4000, span=timedelta(days=3))
    asyncio.run(assert_exact(s))


FROM, TO = "2016-01-01T00:00:00Z", "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/analytics/patterns", {"limit": "0"}, "limit"),
        ("/v1/analytics/patterns", {"limit": "101"}, "limit"),
        ("/v1/analytics/patterns", {"bucket": "minute"}, "bucket"),
        ("/v1/analytics/patterns", {"severity": "loud"}, "severity"),
        ("/v1/analytics/patterns", {"from": "yesterday"}, "from"),
        ("/v1/analytics/patterns", {"from": "2026-01-02T00:00:00Z", "to": TO}, "to"),
        ("/v1/analytics/patterns", {"service": " api"}, "service"),
        ("/v1/analytics/patterns", {"nope": "1"}, "nope"),
        ("/v1/analytics/patterns", {"limit": "100", "from": FROM, "to": TO}, "bucket"),
        ("/v1/logs", {"pattern": "xyz"}, "pattern"),
        ("/v1/logs", {"pattern": "0123456789abcdef0"}, "pattern"),
    ],
)  # fmt: skip
async def test_bad_parameters_are_422_naming_them(settings, path, params, field) -> None:
    s = settings(api_ingest=False, api_allowed_hosts="*", api_max_buckets=10_000)
    await Migrator(s).migrate()
    app = create_app(s)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
    ):
        response = await c.get(path, params=params)
    assert response.status_code == 422, response.text
    assert any(field in entry["loc"] for entry in response.json()["detail"]), response.text


async def test_migration_keeps_old_rows_without_a_pattern(settings, tmp_path: Path) -> None:
    """Rows stored before version 9 get a NULL pattern_id (no backfill) and are not counted;
    rows stored after it are."""
    s = settings()
    before = tmp_path / "sql"
    before.mkdir()
    for path in MIGRATIONS.iterdir():
        if path.name.endswith(".sql") and path.name < "009":
            (before / path.name).write_text(path.read_text())
    await Migrator(s, before).migrate()
    await db_query(
        s,
        "INSERT INTO service_logs (idempotency_key, message_id, batch_id, service_name, payload,"
        " severity, `timestamp`) VALUES ('old', 'old', 1, 'legacy', 'user 1 left', 'info',"
        " '2026-11-30 09:30:00')",
    )
    applied = await Migrator(s).migrate()
    assert applied[0] == "009_patterns.sql"  # then any later ones
    assert await db_query(s, "SELECT pattern_id FROM service_logs") == [(None,)]
    writer = BatchWriter(s)
    try:
        await writer.write_batch(
            [stored(1, {**body(1, random.Random(3)), "payload": "user 2 left"})], []
        )
    finally:
        await writer.close()
    app = create_app(s.model_copy(update={"api_ingest": False, "api_allowed_hosts": "*"}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
    ):
        found = (await c.get("/v1/analytics/patterns")).json()["patterns"]
    assert [(p["template"], p["count"]) for p in found] == [("user <*> left", 1)]


async def _seed(s: Settings, count: int) -> list[tuple[Any, ...]]:
    """`count` logs stored; the oracle: (pattern, COUNT(*)), most frequent first."""
    await Migrator(s).migrate()
    rng = random.Random(4)
    writer = BatchWriter(s)
    try:
        await writer.write_batch([stored(i, body(i, rng)) for i in range(count)], [])
    finally:
        await writer.close()
    return await db_query(
        s, "SELECT pattern_id, COUNT(*) FROM service_logs GROUP BY pattern_id ORDER BY 2 DESC"
    )


def test_lms_patterns_command(settings) -> None:
    s = settings()
    oracle = asyncio.run(_seed(s, 100))
    env = child_environment(s, {})
    result = subprocess.run(
        [*LMS, "patterns", "--limit", "3", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)["patterns"]
    assert [p["count"] for p in found] == [int(n) for _, n in oracle[:3]]
    table = subprocess.run(
        [*LMS, "patterns"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert table.stdout.splitlines()[0].split() == ["COUNT", "PATTERN", "TEMPLATE"]
    bad = subprocess.run(
        [*LMS, "patterns", "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "to" in bad.stderr
