"""Each log is stored once by its idempotency key (migration 005), not by its Pub/Sub id.

* A producer's key (the `lms_key` attribute HTTP ingestion sets from a native `id`, an
  Elasticsearch `_id` or the content of an OTLP/Loki record) makes a retried request, which
  publishes new messages, store nothing twice.
* Without one, the key is `<message id>@<publish time>`: a new emulator numbers its message
  ids from 1 again, and a database that outlives it must not drop new logs as duplicates.
* Rows stored before the migration, and messages published before it was applied, keep their
  bare message id, so a redelivery across the upgrade is still recognised.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from lms.api.app import create_app
from lms.domain.record import LogRecord
from lms.ingest.http.publisher import LogPublisher
from lms.ingest.sources.pubsub.keys import KEY_ATTRIBUTE, client_key_problem, message_key
from lms.ingest.supervisor import KEYS_MIGRATION, Supervisor
from lms.store.migrations import MIGRATIONS, Migrator, migration_files
from lms.store.writer import BatchWriter, StoredLog
from tests.helpers import db_query, ensure_resources, make_log, publish

pytestmark = pytest.mark.integration

RECORD = LogRecord("svc-key", "p", "info", datetime(2026, 12, 1, 8))


def test_a_producer_key_wins_and_pubsub_keys_carry_the_publish_time() -> None:
    assert message_key("7", 5_000, {KEY_ATTRIBUTE: "ck-1"}, 1_000) == "key:ck-1"
    assert message_key("7", 5_000, {KEY_ATTRIBUTE: "ck-1"}, None) == "key:ck-1"
    assert message_key("7", 5_000, {}, 1_000) == "7@5000"
    assert message_key("7", 6_000, {}, 1_000) != message_key("7", 5_000, {}, 1_000)
    # Published before the migration (or with none applied): the key rows had before it.
    assert message_key("7", 999, {}, 1_000) == "7"
    assert message_key("7", 5_000, {}, None) == "7"
    assert message_key("7", 5_000, {KEY_ATTRIBUTE: ""}, 1_000) == "7@5000"


@pytest.mark.parametrize("key", ["k" * 252, "ck-1 ", " ck-1", "ck\n1", "ck\x1b1"])
def test_a_producer_key_that_cannot_be_one_is_named_and_not_used(key: str) -> None:
    attributes = {KEY_ATTRIBUTE: key}
    problem = client_key_problem(attributes)
    assert problem is not None and problem.startswith("attribute lms_key ")
    assert message_key("7", 5_000, attributes, 1_000) == "7@5000"  # the message's own key
    assert client_key_problem({KEY_ATTRIBUTE: "k" * 251}) is None
    assert client_key_problem({KEY_ATTRIBUTE: "ck 1"}) is None  # a space inside is fine


async def _rows(settings) -> list[tuple[str, str]]:
    return [
        (str(key), str(mid))
        for key, mid in await db_query(
            settings, "SELECT idempotency_key, message_id FROM service_logs ORDER BY id"
        )
    ]


async def _drain(settings) -> None:
    await asyncio.wait_for(Supervisor(settings, drain_idle=1.0).run(asyncio.Event()), 60)


async def test_messages_with_one_producer_key_are_stored_once(settings) -> None:
    s = settings(batchsize=10, flushinterval=0.2)
    await ensure_resources(s)
    body = make_log("svc-key", "info", "retried")
    first = await publish(s, [body], {KEY_ATTRIBUTE: "order-42"})
    second = await publish(s, [body], {KEY_ATTRIBUTE: "order-42"})
    assert first != second  # two Pub/Sub messages, one log
    await _drain(s)
    assert await _rows(s) == [("key:order-42", first[0])]


async def test_a_retried_http_request_with_ids_stores_nothing_twice(settings) -> None:
    s = settings(batchsize=10, flushinterval=0.2)
    await ensure_resources(s)
    publisher = LogPublisher(s)
    logs = [
        {"id": f"req-{i}", "service_name": "svc-http", "payload": f"m{i}", "severity": "warn",
         "timestamp": "2026-12-01T08:00:00Z"}
        for i in range(3)
    ]  # fmt: skip
    try:
        app = create_app(s, publisher=publisher)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lms") as client:
            for _attempt in range(2):  # the client timed out and sent it again
                answer = await client.post("/v1/logs", json=logs)
                assert answer.status_code == 202 and answer.json()["accepted"] == 3
    finally:
        await publisher.close()
    await _drain(s)
    assert sorted(key for key, _mid in await _rows(s)) == ["key:req-0", "key:req-1", "key:req-2"]
    counted = await db_query(s, "SELECT SUM(`count`) FROM service_severity")
    assert int(counted[0][0]) == 3


async def test_a_repeated_message_id_with_a_later_publish_time_is_a_new_log(settings) -> None:
    """What a restarted emulator does: message id 1 again, for another log."""
    s = settings()
    await Migrator(s).migrate()
    writer = BatchWriter(s)
    try:
        before = await writer.write_batch([StoredLog("1", RECORD, "1@1000")], [])
        after = await writer.write_batch([StoredLog("1", RECORD, "1@2000")], [])
        again = await writer.write_batch([StoredLog("1", RECORD, "1@2000")], [])
    finally:
        await writer.close()
    assert (before.new, after.new, again.new) == (1, 1, 0)
    assert await _rows(s) == [("1@1000", "1"), ("1@2000", "1")]


async def test_the_migration_keeps_rows_and_their_redeliveries_are_still_recognised(
    settings, tmp_path: Path
) -> None:
    s = settings()
    older = tmp_path / "sql"
    older.mkdir()
    for script in migration_files():
        if script.name < KEYS_MIGRATION:
            (older / script.name).write_text(script.read_text())
    await Migrator(s, older).migrate()
    await db_query(
        s,
        "INSERT INTO service_logs (message_id, batch_id, service_name, payload, severity,"
        " `timestamp`) VALUES ('m1', 1, 'svc-old', 'stored before', 'info', '2026-11-30')",
    )
    await db_query(
        s,
        "INSERT INTO service_severity (service_name, severity, `count`)"
        " VALUES ('svc-old', 'info', 1)",
    )
    applied = await Migrator(s).migrate()
    assert applied == [m.name for m in migration_files() if m.name >= KEYS_MIGRATION]
    assert (MIGRATIONS / KEYS_MIGRATION).is_file()
    assert await _rows(s) == [("m1", "m1")]
    applied = await Migrator(s).applied_at(KEYS_MIGRATION)
    assert applied is not None
    cutoff = int(applied * 1_000_000)
    writer = BatchWriter(s)
    try:
        # m1 published before the upgrade and redelivered after it: the same key, ignored.
        redelivered = message_key("m1", cutoff - 1_000_000, {}, cutoff)
        result = await writer.write_batch([StoredLog("m1", RECORD, redelivered)], [])
        assert result.new == 0
        # A new emulator's m1, published after the upgrade: another log.
        fresh = message_key("m1", cutoff + 1_000_000, {}, cutoff)
        assert (await writer.write_batch([StoredLog("m1", RECORD, fresh)], [])).new == 1
    finally:
        await writer.close()
    totals = await db_query(s, "SELECT SUM(`count`) FROM service_severity")
    logs = await db_query(s, "SELECT COUNT(*) FROM service_logs")
    hourly = await db_query(
        s, "SELECT SUM(`debug` + `info` + `warn` + `error` + `fatal`) FROM volume_rollup"
    )  # backfilled by 010
    assert int(totals[0][0]) == int(logs[0][0]) == int(hourly[0][0]) == 2
