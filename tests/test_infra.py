"""Smoke tests of the test infrastructure itself: the emulator, the throwaway DB, the helpers,
and the tools of lms.devtools that tests, benchmarks and `make` share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc

from lms.devtools.backlog import subscription_backlog
from lms.devtools.emulator import group_alive
from lms.devtools.monitor_process import settings_env
from lms.devtools.ports import accepts_connections, free_port
from lms.devtools.verify import Consistency, Mismatch, check_consistency
from lms.ingest.sources.pubsub.client import (
    ensure_subscription,
    publisher_client,
    subscriber_client,
)
from lms.settings import load_settings
from lms.store.migrations import Migrator, migration_files
from tests.helpers import (
    SettingsFactory,
    db_query,
    make_log,
    publish,
    wait_until,
)

MIGRATION_NAMES = [script.name for script in migration_files()]

pytestmark = pytest.mark.integration

TABLES = {
    "schema_migrations",
    "service_logs",
    "service_severity",
    "rejected_messages",
    "log_patterns",
    "pattern_counts",
    "volume_rollup",
    "request_rollup",
    "request_rollup_day",
    "request_users",
    "request_users_day",
    "pattern_rollup",
    "pattern_rollup_day",
    "pattern_service_rollup",
    "pattern_service_rollup_day",
    "request_users_all_day",
    "commit_rollup",
}


async def test_emulator_round_trip(settings: SettingsFactory, pubsub_emulator: str) -> None:
    s = settings()
    assert s.pubsub_emulator_host == pubsub_emulator == os.environ["PUBSUB_EMULATOR_HOST"]
    bodies = [make_log("svc", "info", f"hello {i}") for i in range(3)] + [b"\xffnot json"]

    async with publisher_client(s) as publisher, subscriber_client(s) as subscriber:
        await ensure_subscription(publisher, subscriber, s)
        await ensure_subscription(publisher, subscriber, s)  # idempotent
        ids = await publish(s, bodies, attributes={"origin": "test"})
        assert len(set(ids)) == len(bodies)

        received: dict[str, bytes] = {}

        async def pulled_everything() -> bool:
            try:
                response = await subscriber.pull(
                    subscription=s.subscription_path, max_messages=10, timeout=2, retry=None
                )
            except gexc.DeadlineExceeded:
                return False
            for rm in response.received_messages:
                assert rm.message.attributes["origin"] == "test"
                received[rm.message.message_id] = rm.message.data
            if response.received_messages:
                await subscriber.acknowledge(
                    subscription=s.subscription_path,
                    ack_ids=[rm.ack_id for rm in response.received_messages],
                )
            return len(received) == len(bodies)

        await wait_until(pulled_everything, timeout=30, message="all published messages pulled")

    assert received == dict(zip(ids, bodies, strict=True))
    assert await subscription_backlog(s) == 0


async def test_subscription_backlog_counts_and_hands_messages_back(
    settings: SettingsFactory,
) -> None:
    s = settings()
    async with publisher_client(s) as publisher, subscriber_client(s) as subscriber:
        await ensure_subscription(publisher, subscriber, s)
    await publish(s, [make_log("svc", "debug", str(i)) for i in range(5)])
    assert await subscription_backlog(s) == 5
    assert await subscription_backlog(s) == 5  # nacked, so still there


async def test_publish_in_chunks(settings: SettingsFactory) -> None:
    s = settings()
    async with publisher_client(s) as publisher, subscriber_client(s) as subscriber:
        await ensure_subscription(publisher, subscriber, s)
    ids = await publish(s, [b"x"] * 2500)
    assert len(set(ids)) == 2500
    assert await subscription_backlog(s) == 2500


async def test_migrate_creates_tables_once(settings: SettingsFactory, mysql_database: str) -> None:
    s = settings()
    assert s.mysql_database == mysql_database
    assert await db_query(s, "SHOW TABLES") == []
    migrator = Migrator(s)
    assert await migrator.migrate() == MIGRATION_NAMES
    assert await migrator.migrate() == []
    assert await Migrator(s).migrate() == []  # a fresh instance agrees

    tables = {row[0] for row in await db_query(s, "SHOW TABLES")}
    assert tables == TABLES
    versions = await db_query(s, "SELECT version FROM schema_migrations")
    assert versions == [(name,) for name in MIGRATION_NAMES]
    columns = await db_query(
        s,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = 'service_logs' ORDER BY ordinal_position",
        (mysql_database,),
    )
    assert [c[0] for c in columns][:9] == [
        "id",
        "message_id",
        "idempotency_key",
        "batch_id",
        "service_name",
        "payload",
        "severity",
        "timestamp",
        "created_at",
    ]


async def test_wait_until_times_out_with_a_message() -> None:
    calls = 0

    async def never() -> bool:
        nonlocal calls
        calls += 1
        return False

    with pytest.raises(AssertionError, match="the moon is blue"):
        await wait_until(never, timeout=0.2, interval=0.05, message="the moon is blue")
    assert calls >= 2
    assert await wait_until(lambda: 42, timeout=1) == 42


def test_free_port_is_free_and_bindable() -> None:
    port = free_port()
    assert not accepts_connections(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert accepts_connections(port)


def emulator_command(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lms.devtools.emulator", *args],
        env={**os.environ, "EMULATOR_RUN_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_emulator_command_line_starts_and_stops_its_process_group(tmp_path: Path) -> None:
    started = emulator_command(tmp_path, "start")
    try:
        assert started.returncode == 0, started.stderr
        host = started.stdout.strip()
        port = int(host.rpartition(":")[2])
        assert accepts_connections(port)
        pgid = int((tmp_path / "emulator.pid").read_text())
        assert group_alive(pgid)
        again = emulator_command(tmp_path, "start")  # already running: the same one
        assert (again.returncode, again.stdout.strip()) == (0, host), again.stderr
        assert emulator_command(tmp_path, "host").stdout.strip() == host
        assert emulator_command(tmp_path, "status").returncode == 0
    finally:
        stopped = emulator_command(tmp_path, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not group_alive(pgid), "the emulator's JVM outlived stop"
    assert not accepts_connections(port)
    assert emulator_command(tmp_path, "status").returncode == 1
    assert emulator_command(tmp_path, "host").returncode == 1
    assert emulator_command(tmp_path, "stop").returncode == 0  # nothing to stop is fine
    assert not (tmp_path / "emulator.pid").exists()


def test_settings_env_configures_a_child_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    derived = load_settings(_env_file=None, batchsize=300, flushinterval=0.5, api_token="t")
    explicit = load_settings(_env_file=None, batchsize=300, max_outstanding=900)
    for settings in (derived, explicit):
        env = settings_env(settings)
        for name in type(settings).model_fields:
            monkeypatch.delenv(name.upper(), raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert load_settings(_env_file=None) == settings
    # Left out while derived from BATCHSIZE, so a child given another BATCHSIZE derives it anew.
    assert "MAX_OUTSTANDING" not in settings_env(derived)
    assert settings_env(explicit)["MAX_OUTSTANDING"] == "900"


def test_consistency_reports_each_way_to_be_wrong() -> None:
    two, one, three = ({("a", "info"): n} for n in (2, 1, 3))
    right = Consistency(two, two, two, {}, 0)
    assert right.ok and right.mismatches == [] and right.total_stored == 2
    lost = Consistency(two, one, one, {}, 0)
    assert not lost.ok
    assert lost.mismatches == [Mismatch(("a", "info"), 2, 1, 1)]
    counted_twice = Consistency(two, two, three, {}, 0)
    assert not counted_twice.ok and counted_twice.overcounted == 1
    stored_twice = Consistency(two, two, two, {"7": 2}, 0)
    assert not stored_twice.ok and stored_twice.duplicate_rows == 1
    stray = Consistency({}, {("b", "warn"): 1}, {("b", "warn"): 1}, {}, 0)
    assert stray.mismatches == [Mismatch(("b", "warn"), 0, 1, 1)]
    assert "<-- mismatch" in lost.table() and "stored twice" in stored_twice.table()


async def test_consistency_reads_the_three_places(settings: SettingsFactory) -> None:
    s = settings()
    await Migrator(s).migrate()
    stamp = datetime(2024, 5, 1, 12)
    for mid, service in (("1", "svc-a"), ("2", "svc-a"), ("3", "svc-b ")):
        await db_query(
            s,
            "INSERT INTO service_logs (idempotency_key, message_id, batch_id, service_name,"
            " payload, severity, `timestamp`) VALUES (%s, %s, 1, %s, 'p', 'info', %s)",
            (mid, mid, service, stamp),
        )
    await db_query(
        s,
        "INSERT INTO service_severity (service_name, severity, `count`, created_at)"
        " VALUES ('svc-a', 'info', 2, %s), ('svc-b', 'info', 1, %s)",
        (stamp, stamp),
    )
    # "svc-b " and "svc-b" are one group in MySQL (PAD SPACE), and so here.
    published = {("svc-a", "info"): 2, ("svc-b", "info"): 1}
    result = await check_consistency(s, published)
    assert result.ok, result.table()
    assert (result.total_stored, result.rejected, result.duplicate_ids) == (3, 0, {})
    result = await check_consistency(s, {("svc-a", "info"): 3, ("svc-b", "info"): 1})
    assert result.mismatches == [Mismatch(("svc-a", "info"), 3, 2, 2)]
