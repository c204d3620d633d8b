"""`lms retention` on the real MariaDB, over data the real writer stored across 20 days (late
logs, logs committed on another day than their timestamp's, redeliveries, rejections):
compaction changes no answer of the API, expiry leaves every rollup equal to COUNT(*) over the
logs that remain, and neither loses or doubles a count when a chunk dies midway or while a
writer stores logs into the same hours."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pymysql
import pytest

from lms.api.app import create_app
from lms.devtools.monitor_process import child_environment, lms_command
from lms.domain.record import LogRecord, Reason, Rejection
from lms.settings import Settings
from lms.store.migrations import Migrator
from lms.store.retention import ROLLUPS, Retention, day_cutoff
from lms.store.writer import BatchWriter, StoredLog, StoredRejection
from tests.conftest import mysql_config, query_settings
from tests.helpers import pattern_oracles, same_rows

pytestmark = pytest.mark.integration

FIRST_DAY = datetime(2026, 11, 1)
DAYS = 20
PARTS = 2
"""Batches a day."""
NOW = FIRST_DAY + timedelta(days=DAYS, hours=12)
"""The clock the runs are given: noon of the day after the last day with logs."""
SERVICES = ("api", "billing", "worker")
SEVERITIES = ("debug", "info", "warn", "error", "fatal")
ROUTES = ("/orders", "/users/{id}")
COMMITS = ("c1", "c2", None)
TEMPLATES = ("user {} logged in", "order {} paid", "cache miss for key k{}", "timeout after {} ms")


def _admin(database: str) -> pymysql.Connection:
    return pymysql.connect(**mysql_config(), database=database, charset="utf8mb4", autocommit=True)


def _query(database: str, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    with _admin(database) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _record(rng: random.Random, moment: datetime) -> LogRecord:
    """A log; a third are requests (for the request rollups), of two routes and four users."""
    metadata = None
    if rng.random() < 0.33:
        http = {"route": rng.choice(ROUTES), "status_code": 200, "duration_ms": 3}
        metadata = json.dumps({"http": http, "user_id": f"u{rng.randrange(4)}"})
    return LogRecord(
        service_name=rng.choice(SERVICES),
        payload=rng.choice(TEMPLATES).format(rng.randrange(10_000)),
        severity=rng.choices(SEVERITIES, (2, 10, 3, 2, 1))[0],
        timestamp=moment,
        commit=rng.choice(COMMITS),
        metadata=metadata,
    )


async def _store_days(settings: Settings, database: str, seed: int = 18) -> None:
    """PARTS batches a day by the real writer, each committed (its service_severity rows
    dated) on its day: mostly logs of that day, some of three days before (a backlog), a few
    just past midnight (clock skew); the day's last batch redelivers half of the one before."""
    rng = random.Random(seed)
    writer = BatchWriter(settings)
    previous: list[StoredLog] = []
    n = 0
    try:
        for day in range(DAYS):
            start = FIRST_DAY + timedelta(days=day)
            for part in range(PARTS):
                logs = []
                for _ in range(80):
                    roll = rng.random()
                    if roll < 0.1:
                        moment = start - timedelta(days=3) + timedelta(seconds=rng.randrange(86400))
                    elif roll < 0.13:
                        moment = start + timedelta(days=1, seconds=rng.randrange(300))
                    else:
                        moment = start + timedelta(seconds=rng.randrange(86400))
                    moment += timedelta(microseconds=rng.randrange(10**6))
                    n += 1
                    logs.append(StoredLog(f"m{n}", _record(rng, moment)))
                if part == PARTS - 1:
                    logs += previous[:30]
                (top,) = _query(database, "SELECT COALESCE(MAX(id), 0) FROM service_severity")[0]
                rejected = StoredRejection(
                    f"r{n}", Rejection(Reason.INVALID_JSON, "bad"), b"{", start
                )
                await writer.write_batch(logs, [rejected])
                _query(
                    database,
                    "UPDATE service_severity SET created_at = %s WHERE id > %s",
                    (start + timedelta(hours=12 * part, minutes=rng.randrange(600)), top),
                )
                previous = logs
    finally:
        await writer.close()


@dataclass
class Stored:
    database: str
    settings: Settings
    client: httpx.AsyncClient

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def answers(self) -> dict[str, Any]:
        """What the API answers about counts, over the whole stored range."""
        window = {"from": "2026-10-20T00:00:00Z", "to": "2026-11-25T00:00:00Z"}
        answers = {
            "services": await self.get("/v1/services"),
            "consistency": await self.get("/v1/consistency"),
            "severity": await self.get("/v1/severity", bucket="day", **window),
        }
        for bucket in ("hour", "day"):
            answers[f"volume-{bucket}"] = await self.get(
                "/v1/analytics/volume", bucket=bucket, **window
            )
        answers["errors"] = await self.get("/v1/analytics/errors", bucket="day", **window)
        answers["commit"] = await self.get("/v1/analytics/volume", commit="c1", **window)
        answers["patterns"] = await self.get(
            "/v1/analytics/patterns", limit=10, bucket="hour", **window
        )
        for pattern in answers["patterns"]["patterns"]:
            pattern.pop("example")  # the newest log: unchanged too, but big to compare
        return answers

    def oracles(self) -> None:
        """Every rollup equals COUNT(*) over service_logs, key by key."""
        self.severity_oracle()
        self.time_oracles()

    def severity_oracle(self) -> None:
        """SUM(count) of service_severity equals COUNT(*), per (service, severity): true at
        every commit, also between the chunks of an expiry."""
        db = self.database
        logs = Counter(
            {
                (str(s), str(v)): int(c)
                for s, v, c in _query(
                    db, "SELECT service_name, severity, COUNT(*) FROM service_logs GROUP BY 1, 2"
                )
            }
        )
        severity = Counter(
            {
                (str(s), str(v)): int(c)
                for s, v, c in _query(
                    db,
                    "SELECT service_name, severity, SUM(`count`) FROM service_severity"
                    " GROUP BY 1, 2",
                )
            }
        )
        assert +severity == +logs

    def time_oracles(self) -> None:
        """The rollups by the logs' own hour equal COUNT(*) per hour: true once a run ended
        (while one runs, the day it is expiring is partly gone)."""
        db = self.database
        hourly = Counter(
            {
                (h, str(s), str(v)): int(c)
                for h, s, v, c in _query(
                    db,
                    "SELECT DATE_FORMAT(`timestamp`, '%%Y-%%m-%%d %%H:00:00'), service_name,"
                    " severity, COUNT(*) FROM service_logs GROUP BY 1, 2, 3",
                )
            }
        )
        rollup: Counter[tuple[str, str, str]] = Counter()
        for hour, service, *counts in _query(
            db,
            "SELECT DATE_FORMAT(hour_start, '%%Y-%%m-%%d %%H:00:00'), service_name,"
            " `debug`, `info`, `warn`, `error`, `fatal` FROM volume_rollup",
        ):
            for name, count in zip(SEVERITIES, counts, strict=True):
                rollup[(hour, str(service), name)] += int(count)
        assert +rollup == +hourly
        for table, rows, logs in pattern_oracles():
            assert same_rows(_query(db, rows)) == same_rows(_query(db, logs)), table
        by_commit = _query(
            db,
            "SELECT `commit`, DATE_FORMAT(`timestamp`, '%%Y-%%m-%%d %%H:00:00'), service_name,"
            f" {', '.join(f'SUM(severity = {s!r})' for s in SEVERITIES)} FROM service_logs"
            " WHERE `commit` IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        commits = _query(
            db,
            "SELECT `commit`, DATE_FORMAT(hour_start, '%%Y-%%m-%%d %%H:00:00'), service_name,"
            " `debug`, `info`, `warn`, `error`, `fatal` FROM commit_rollup ORDER BY 1, 2, 3",
        )
        assert [tuple(map(str, r)) for r in commits] == [tuple(map(str, r)) for r in by_commit]
        assert commits
        self.request_oracles()

    def request_oracles(self) -> None:
        """The request rollups, hourly and daily, per key equal COUNT(*) of the request logs
        (every log with metadata is one, see _record)."""
        db = self.database
        for unit, table, time, user in (
            ("%%Y-%%m-%%d %%H:00:00", "request_rollup", "hour_start", False),
            ("%%Y-%%m-%%d", "request_rollup_day", "day_start", False),
            ("%%Y-%%m-%%d %%H:00:00", "request_users", "hour_start", True),
            ("%%Y-%%m-%%d", "request_users_day", "day_start", True),
        ):
            part = "$.user_id" if user else "$.http.route"
            logs = _query(
                db,
                f"SELECT DATE_FORMAT(`timestamp`, '{unit}'), service_name,"
                f" JSON_UNQUOTE(JSON_EXTRACT(metadata, '{part}')), COUNT(*) FROM service_logs"
                " WHERE metadata IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            )
            column = "user_id" if user else "route"
            rolled = _query(
                db,
                f"SELECT DATE_FORMAT({time}, '{unit}'), service_name, {column}, `count`"
                f" FROM {table} ORDER BY 1, 2, 3",
            )
            assert [(*r[:3], int(r[3])) for r in rolled] == [(*r[:3], int(r[3])) for r in logs]
            assert logs, table
        # request_users_all_day (sql/014) is request_users_day with the service cut.
        by_service = _query(
            db,
            "SELECT day_start, user_id, SUM(`count`), MAX(last_seen) FROM request_users_day"
            " GROUP BY 1, 2 ORDER BY 1, 2",
        )
        every = _query(
            db,
            "SELECT day_start, user_id, `count`, last_seen FROM request_users_all_day"
            " ORDER BY 1, 2",
        )
        assert [(*r[:2], int(r[2]), r[3]) for r in every] == [
            (*r[:2], int(r[2]), r[3]) for r in by_service
        ]

    def rows(self, table: str) -> int:
        return int(_query(self.database, f"SELECT COUNT(*) FROM {table}")[0][0])


@pytest.fixture
async def stored(mysql_database: str) -> AsyncIterator[Stored]:
    settings = query_settings(mysql_database).model_copy(update={"retention_chunk": 100})
    await Migrator(settings).migrate()
    await _store_days(settings, mysql_database)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        yield Stored(mysql_database, settings, c)


def _retention(stored: Stored, **overrides: object) -> Retention:
    return Retention(stored.settings.model_copy(update=overrides))


async def test_compaction_changes_no_answer_and_leaves_one_row_per_key_and_bucket(
    stored: Stored,
) -> None:
    before = await stored.answers()
    stored.oracles()
    sizes = {r.table: stored.rows(r.table) for r in ROLLUPS}
    async with _retention(stored) as retention:
        report = await retention.run(now=NOW)
    assert await stored.answers() == before
    stored.oracles()
    horizon = day_cutoff(1, NOW)
    for rollup in ROLLUPS:
        bucket = "%Y-%m-%d" if rollup.grain == "day" else "%Y-%m-%d %H"
        keys = ", ".join(rollup.keys)
        (worst,) = _query(
            stored.database,
            f"SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM {rollup.table}"
            f" WHERE `{rollup.time}` < %s GROUP BY DATE_FORMAT(`{rollup.time}`, %s), {keys}) AS g",
            (horizon, bucket),
        )[0]
        assert worst == 1, rollup.table
        assert stored.rows(rollup.table) == sizes[rollup.table] - report.merged[rollup.table]
        assert report.merged[rollup.table] > 0, rollup.table
    # A second run finds nothing left to merge.
    async with _retention(stored) as retention:
        again = await retention.run(now=NOW)
    assert sum(again.merged.values()) == 0
    assert await stored.answers() == before


async def test_expiry_keeps_whole_days_and_every_rollup_equal_to_what_remains(
    stored: Stored,
) -> None:
    cutoff = day_cutoff(7, NOW)
    kept = _query(stored.database, "SELECT id FROM service_logs WHERE `timestamp` >= %s", (cutoff,))
    rejected_kept = stored.rows("rejected_messages") - int(
        _query(
            stored.database,
            "SELECT COUNT(*) FROM rejected_messages WHERE received_at < %s",
            (cutoff,),
        )[0][0]
    )
    async with _retention(stored, retention_days=7) as retention:
        report = await retention.run(now=NOW)
    assert report.deleted["service_logs"] > 0
    assert report.deleted["request_rollup"] > 0 and report.deleted["request_users_day"] > 0
    assert report.deleted["pattern_rollup"] > 0 and report.deleted["pattern_service_rollup_day"] > 0
    remaining = _query(stored.database, "SELECT id FROM service_logs")
    assert sorted(remaining) == sorted(kept)
    for table, column in (
        ("service_logs", "timestamp"),
        ("volume_rollup", "hour_start"),
        ("pattern_counts", "bucket_start"),
        ("pattern_rollup", "hour_start"),
        ("pattern_rollup_day", "day_start"),
        ("pattern_service_rollup", "hour_start"),
        ("pattern_service_rollup_day", "day_start"),
        ("rejected_messages", "received_at"),
        ("request_rollup", "hour_start"),
        ("request_rollup_day", "day_start"),
        ("request_users", "hour_start"),
        ("request_users_day", "day_start"),
        ("request_users_all_day", "day_start"),
        ("commit_rollup", "hour_start"),
    ):
        old = _query(
            stored.database, f"SELECT COUNT(*) FROM {table} WHERE `{column}` < %s", (cutoff,)
        )
        assert old == [(0,)], table
    assert stored.rows("rejected_messages") == rejected_kept
    stored.oracles()  # service_severity included: drained by exactly what was deleted
    assert (await stored.get("/v1/consistency"))["consistent"]
    # Idempotent: nothing more to do on the same day.
    async with _retention(stored, retention_days=7) as retention:
        again = await retention.run(now=NOW)
    assert sum(again.deleted.values()) == 0


class Crash(Exception):
    """What the hook raises inside a chunk's transaction, after its deletes."""


@pytest.mark.parametrize("table", ["service_severity", "volume_rollup", "service_logs"])
async def test_a_chunk_that_dies_after_its_deletes_changes_nothing(
    stored: Stored, table: str
) -> None:
    before = await stored.answers()
    sizes = {name: stored.rows(name) for name in ("service_logs", *(r.table for r in ROLLUPS))}
    seen = 0

    async def crash_at_third(where: str) -> None:
        nonlocal seen
        if where == table:
            seen += 1
            if seen == 3:
                raise Crash(where)

    settings = stored.settings.model_copy(update={"retention_days": 7})
    with pytest.raises(Crash):
        async with Retention(settings, hook=crash_at_third) as retention:
            await retention.run(now=NOW)
    # Two chunks committed, the third rolled back whole: no total doubled or vanished.
    stored.severity_oracle()
    if table != "service_logs":
        stored.time_oracles()
    if table != "service_logs":  # expiry had not started: no answer changed at all
        assert await stored.answers() == before
        assert stored.rows("service_logs") == sizes["service_logs"]
    async with Retention(settings) as retention:
        await retention.run(now=NOW)
    stored.oracles()
    assert (await stored.get("/v1/consistency"))["consistent"]


async def test_compaction_beside_a_writer_storing_late_logs_into_the_same_hours(
    stored: Stored,
) -> None:
    """lms mon's inserts of late logs (old hours) race the chunks: nothing is lost or doubled."""
    rng = random.Random(7)
    writer = BatchWriter(stored.settings)
    done = asyncio.Event()

    async def late_logs() -> int:
        n = 0
        try:
            while not done.is_set() or n < 400:
                logs = []
                for _ in range(20):
                    n += 1
                    moment = FIRST_DAY + timedelta(seconds=rng.randrange(5 * 86400))
                    logs.append(StoredLog(f"late{n}", _record(rng, moment)))
                await writer.write_batch(logs, [])
        finally:
            await writer.close()
        return n

    async def compact() -> None:
        try:
            async with _retention(stored, retention_chunk=30) as retention:
                await retention.run(now=NOW)
        finally:
            done.set()

    written, _ = await asyncio.gather(late_logs(), compact())
    assert written >= 400
    stored.oracles()
    assert (await stored.get("/v1/consistency"))["consistent"]


def _lms_retention(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*lms_command(), "retention"], env=env, capture_output=True, text=True, timeout=300
    )


async def test_the_command_expires_with_the_settings_and_says_what_it_did(stored: Stored) -> None:
    """`lms retention` as a process, on today's clock, with RETENTION_DAYS set so that the
    cutoff falls on the third day stored."""
    days = (day_cutoff(0) - (FIRST_DAY + timedelta(days=2))).days
    cutoff = day_cutoff(days)
    assert cutoff == FIRST_DAY + timedelta(days=2)
    (expired,) = _query(
        stored.database, "SELECT COUNT(*) FROM service_logs WHERE `timestamp` < %s", (cutoff,)
    )[0]
    env = child_environment(stored.settings, {"RETENTION_DAYS": str(days), "RETENTION_CHUNK": "50"})
    done = await asyncio.to_thread(_lms_retention, env)
    assert done.returncode == 0, done.stderr
    assert f"retention: keeping {days} days" in done.stdout
    assert expired > 0
    assert f"service_logs: {expired} rows deleted" in done.stdout
    assert _query(
        stored.database, "SELECT COUNT(*) FROM service_logs WHERE `timestamp` < %s", (cutoff,)
    ) == [(0,)]
    stored.oracles()
    bad = await asyncio.to_thread(_lms_retention, {**env, "RETENTION_DAYS": "0"})
    assert bad.returncode == 2
    assert "RETENTION_DAYS" in bad.stderr
