"""The least-privilege MySQL users of deploy/mysql/lms-users.sh, on the real MariaDB: the
script's own SQL creates them (throwaway names), the migrator applies the schema as the DDL
user, a real `lms mon` stores logs as the monitor user, the reader reads as the API user,
`lms retention` expires and compacts as the retention user, and each is refused what it was
not granted."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from lms.ingest.sources.pubsub.keys import KEY_ATTRIBUTE
from lms.ingest.supervisor import Supervisor
from lms.query.filters import LogQuery
from lms.query.reader import LogReader
from lms.settings import Settings
from lms.store.errors import TerminalStorageError
from lms.store.migrations import Migrator, migration_files
from lms.store.patterns import UPSERT_SERVICE_HOURS
from lms.store.request_rollup import UPSERT_USERS
from lms.store.retention import Retention
from lms.store.volume_rollup import UPSERT_COMMITS
from tests.conftest import mysql_config
from tests.helpers import SettingsFactory, db_query, ensure_resources, make_log, publish

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "mysql" / "lms-users.sh"
DENIED = {1142, 1143, 1044}
"""Command denied on a table or column, access denied to a database."""


class Users:
    """The three users, named for this test: `settings_of(role)` connects as one of them."""

    def __init__(self, database: str) -> None:
        suffix = secrets.token_hex(4)
        roles = ("migrate", "mon", "api", "retention")
        self.names = {role: f"lms_{role}_{suffix}" for role in roles}
        self.passwords = {role: secrets.token_urlsafe(18) for role in self.names}
        self.env = {
            "LMS_DATABASE": database,
            "LMS_MIGRATE_USER": self.names["migrate"],
            "LMS_MON_USER": self.names["mon"],
            "LMS_API_USER": self.names["api"],
            "LMS_MIGRATE_PASSWORD": self.passwords["migrate"],
            "LMS_MON_PASSWORD": self.passwords["mon"],
            "LMS_API_DB_PASSWORD": self.passwords["api"],
            "LMS_RETENTION_USER": self.names["retention"],
            "LMS_RETENTION_PASSWORD": self.passwords["retention"],
        }

    def sql(self) -> str:
        env = {key: value for key, value in os.environ.items() if not key.startswith("LMS_")}
        result = subprocess.run(
            ["bash", str(SCRIPT), "--print"],
            env={**env, **self.env},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout

    def settings_of(self, settings: SettingsFactory, role: str, **overrides: object) -> Settings:
        return settings(
            mysql_user=self.names[role], mysql_password=self.passwords[role], **overrides
        )


def _as_root(statements: list[str]) -> None:
    conn = pymysql.connect(**mysql_config(), autocommit=True, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def users(mysql_database: str) -> Iterator[Users]:
    made = Users(mysql_database)
    statements = [line for line in made.sql().splitlines() if line.strip()]
    try:
        _as_root(statements)
        yield made
    finally:
        _as_root([f"DROP USER IF EXISTS '{name}'@'%'" for name in made.names.values()])


def _refused(settings: Settings, sql: str) -> int:
    """The error code `sql` fails with as settings' user (AssertionError if it succeeds)."""
    conn = pymysql.connect(
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.mysql_password,
        database=settings.mysql_database,
        autocommit=True,
        connect_timeout=10,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    except pymysql.err.MySQLError as exc:
        return int(exc.args[0])
    finally:
        conn.close()
    raise AssertionError(f"{settings.mysql_user} was allowed: {sql}")


def test_the_script_refuses_a_missing_password() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LMS_")}
    result = subprocess.run(
        ["bash", str(SCRIPT), "--print"],
        env={**env, "LMS_MIGRATE_PASSWORD": "x", "LMS_MON_PASSWORD": "y"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""  # nothing half-made
    assert "LMS_API_DB_PASSWORD is not set" in result.stderr


def test_the_script_makes_the_retention_user_only_with_its_password() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LMS_")}
    base = {"LMS_MIGRATE_PASSWORD": "x", "LMS_MON_PASSWORD": "y", "LMS_API_DB_PASSWORD": "z"}
    for extra, made in (({}, False), ({"LMS_RETENTION_PASSWORD": "w"}, True)):
        result = subprocess.run(
            ["bash", str(SCRIPT), "--print"],
            env={**env, **base, **extra},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert (
            "GRANT SELECT, INSERT, UPDATE, DELETE ON `lms`.* TO 'lms_retention'" in result.stdout
        ) is made


async def test_each_user_can_do_its_part_and_no_more(settings, users: Users) -> None:
    migrate = users.settings_of(settings, "migrate")
    mon = users.settings_of(settings, "mon", batchsize=100, flushinterval=0.2)
    api = users.settings_of(settings, "api")

    # The monitor user cannot apply the schema, and says who must.
    with pytest.raises(TerminalStorageError, match="lms migrate"):
        await Migrator(mon).migrate()

    applied = await Migrator(migrate).migrate()
    assert applied == [script.name for script in migration_files()]
    # Up to date: the monitor user's start-up (which migrates) now only reads.
    assert await Migrator(mon).migrate() == []

    # A real `lms mon`, as the monitor user: valid logs, a duplicate (same key) and a
    # rejected message, drained and stored.
    await ensure_resources(mon)
    http = {"http": {"route": "/r", "status_code": 200, "duration_ms": 3}, "user_id": "u-1"}
    await publish(
        mon,
        [make_log("svc-u", "info", f"m{i}", metadata=http, commit="c-1") for i in range(5)]
        + [b"not json"],
    )
    await publish(mon, [make_log("svc-u", "warn", "keyed")] * 2, {KEY_ATTRIBUTE: "k-1"})
    monitor = Supervisor(mon, drain_idle=2.0)
    await asyncio.wait_for(monitor.run(asyncio.Event()), timeout=60)
    rows = await db_query(
        migrate,
        "SELECT severity, COUNT(*) FROM service_logs GROUP BY severity ORDER BY severity",
    )
    assert [(str(severity), count) for severity, count in rows] == [("info", 5), ("warn", 1)]
    assert await db_query(migrate, "SELECT reason FROM rejected_messages") == [("invalid_json",)]
    # ... its request logs in the request rollups, which it upserts (UPDATE on those only).
    for table in (
        "request_rollup",
        "request_rollup_day",
        "request_users",
        "request_users_day",
        "request_users_all_day",
    ):
        assert await db_query(migrate, f"SELECT SUM(`count`) FROM {table}") == [(5,)], table
    # ... and every log in the pattern rollups, which it upserts too (a key added to).
    for table in (
        "pattern_rollup",
        "pattern_rollup_day",
        "pattern_service_rollup",
        "pattern_service_rollup_day",
    ):
        assert await db_query(migrate, f"SELECT SUM(`count`) FROM {table}") == [(6,)], table
    pattern = ("svc-u", "2020-01-01 00:00:00", 7, "info", 2)
    await db_query(mon, UPSERT_SERVICE_HOURS, pattern)
    await db_query(mon, UPSERT_SERVICE_HOURS, pattern)
    added = "SELECT `count` FROM pattern_service_rollup WHERE pattern_id = 7"
    assert await db_query(migrate, added) == [(4,)]
    again = ("2020-01-01 00:00:00", "svc-u", "u-2", 2, "2020-01-01 00:10:00")
    await db_query(mon, UPSERT_USERS, again)
    await db_query(mon, UPSERT_USERS, again)  # the same key: added to its row
    added = "SELECT `count` FROM request_users WHERE user_id = 'u-2'"
    assert await db_query(migrate, added) == [(4,)]
    # ... and commit_rollup, which it upserts too.
    assert await db_query(migrate, "SELECT SUM(`info`) FROM commit_rollup") == [(5,)]
    for _ in range(2):
        await db_query(mon, UPSERT_COMMITS, ("c-2", "2020-01-01 00:00:00", "svc-u", 0, 1, 0, 2, 0))
    added = "SELECT `info`, `error` FROM commit_rollup WHERE `commit` = 'c-2'"
    assert await db_query(migrate, added) == [(2, 4)]

    # The API user reads everything the query API serves.
    async with LogReader(api, pool_size=1, timeout=10) as reader:
        page = await reader.logs(LogQuery(service="svc-u", limit=10))
        assert len(page.logs) == 6
        assert (await reader.consistency()).consistent
        services = await reader.services()
        assert [(s.service_name, s.total) for s in services] == [("svc-u", 6)]

    # ... and nothing more.
    insert = (
        "INSERT INTO service_severity (service_name, severity, `count`) VALUES ('x', 'info', 1)"
    )
    assert _refused(api, insert) in DENIED
    assert _refused(api, "DELETE FROM service_logs") in DENIED
    for statement in (
        "UPDATE service_logs SET payload = ''",
        "UPDATE service_severity SET `count` = 0",
        "UPDATE volume_rollup SET info = 0",
        "UPDATE pattern_counts SET `count` = 0",
        "DELETE FROM pattern_rollup",
        "DELETE FROM service_logs",
        "DELETE FROM request_rollup",
        "DELETE FROM commit_rollup",
        "ALTER TABLE service_logs ADD COLUMN x INT",
        "ALTER TABLE request_rollup ADD COLUMN x INT",
        "DROP TABLE service_severity",
        "DROP TABLE request_users",
    ):
        assert _refused(mon, statement) in DENIED, statement

    # The retention user expires and compacts, as `lms retention` does, and nothing more.
    retention = users.settings_of(settings, "retention", retention_days=1)
    old = "UPDATE service_logs SET `timestamp` = '2020-01-01 00:00:00' WHERE payload = 'm0'"
    await db_query(migrate, old)  # (as the migrate user, who has UPDATE)
    async with Retention(retention) as run:
        report = await run.run()
    assert report.deleted["service_logs"] == 1
    async with LogReader(api, pool_size=1, timeout=10) as reader:
        assert (await reader.consistency()).consistent
    assert await db_query(migrate, "SELECT COUNT(*) FROM service_logs") == [(5,)]
    for statement in ("ALTER TABLE service_logs ADD COLUMN x INT", "DROP TABLE service_severity"):
        assert _refused(retention, statement) in DENIED, statement
