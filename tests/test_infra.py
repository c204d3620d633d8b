"""Smoke tests of the test infrastructure itself: the emulator, the throwaway DB, the helpers."""

from __future__ import annotations

import os

import pytest
from google.api_core import exceptions as gexc

from lms.devtools.backlog import subscription_backlog
from lms.ingest.sources.pubsub.client import (
    ensure_subscription,
    publisher_client,
    subscriber_client,
)
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

TABLES = {"schema_migrations", "service_logs", "service_severity", "rejected_messages"}


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
    assert [c[0] for c in columns][:8] == [
        "id",
        "message_id",
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
