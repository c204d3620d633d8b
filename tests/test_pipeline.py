"""The core pipeline of `lms mon` against the real Pub/Sub emulator and MariaDB."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiomysql
import pymysql
import pytest
import structlog.testing
from prometheus_client import REGISTRY

from lms.devtools.backlog import subscription_backlog
from lms.devtools.verify import check_consistency
from lms.domain.record import LogRecord, parse_message
from lms.ingest.sources.pubsub.client import subscriber_client
from lms.ingest.sources.pubsub.keys import message_key
from lms.ingest.supervisor import KEYS_MIGRATION, Supervisor
from lms.settings import Settings
from lms.store.connection import connect_kwargs
from lms.store.migrations import Migrator
from lms.store.writer import BatchWriter, StoredLog
from tests.helpers import (
    db_query,
    ensure_resources,
    make_log,
    publish,
    wait_until,
)
from tests.lms_process import lms_mon_fixture  # noqa: F401  (the `lms_mon` fixture)

pytestmark = pytest.mark.integration


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Running:
    """A Supervisor running in this event loop, stopped (gracefully) at the end of the test."""

    def __init__(self, monitor: Supervisor) -> None:
        self.monitor = monitor
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(monitor.run(self.stop))

    async def shutdown(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        self.stop.set()
        done, _ = await asyncio.wait({self.task}, timeout=timeout)
        if not done:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            raise AssertionError(f"monitor did not stop within {timeout}s")


@pytest.fixture
async def run_monitor() -> AsyncIterator[Callable[[Settings], Running]]:
    started: list[Running] = []

    def start(settings: Settings) -> Running:
        running = Running(Supervisor(settings))
        started.append(running)
        return running

    yield start
    for running in started:
        if not running.task.done():
            await running.shutdown()


async def prepare(settings: Settings) -> None:
    await Migrator(settings).migrate()
    await ensure_resources(settings)


async def count_logs(settings: Settings) -> int:
    """Rows in service_logs; -1 while the monitor has not created the table yet."""
    try:
        return await _count(settings, "service_logs")
    except pymysql.err.ProgrammingError:
        return -1


async def severity_rows(settings: Settings) -> list[tuple[str, str, int]]:
    rows = await db_query(
        settings, "SELECT service_name, severity, `count` FROM service_severity ORDER BY id"
    )
    return [(name, str(severity), int(count)) for name, severity, count in rows]


async def assert_consistent(settings: Settings, expected: dict[tuple[str, str], int]) -> None:
    """Per (service, severity): expected == COUNT(*) of service_logs == SUM(count), and no
    message id stored twice (the one check of lms.devtools.verify)."""
    result = await check_consistency(settings, expected)
    assert result.ok, result.table()


async def test_full_batches_flush_on_size(settings, run_monitor) -> None:
    s = settings(batchsize=10, flushinterval=600)
    await prepare(s)
    size_batches = metric("lms_batches_flushed_total", trigger="size")
    await publish(s, [make_log("svc-a", "info", f"m{i}") for i in range(30)])
    run_monitor(s)
    await wait_until(lambda: _equals(count_logs(s), 30), timeout=30, message="30 logs stored")
    # Three batches of exactly BATCHSIZE: one severity row of 10 per batch, and nothing
    # waited for the 600 s interval.
    assert await severity_rows(s) == [("svc-a", "info", 10)] * 3
    await wait_until(
        lambda: metric("lms_batches_flushed_total", trigger="size") - size_batches >= 3,
        timeout=10,
        message="3 batches acked",
    )
    assert metric("lms_batches_flushed_total", trigger="size") - size_batches == 3
    await assert_consistent(s, {("svc-a", "info"): 30})


async def test_partial_batch_flushes_on_interval(settings, run_monitor) -> None:
    s = settings(batchsize=1000, flushinterval=1.5)
    await prepare(s)
    interval_batches = metric("lms_batches_flushed_total", trigger="interval")
    running = run_monitor(s)
    await publish(s, [make_log("svc-b", "warn", f"m{i}") for i in range(7)])
    await wait_until(lambda: _equals(count_logs(s), 7), timeout=20, message="7 logs stored")
    assert await severity_rows(s) == [("svc-b", "warn", 7)]
    # A batch is counted once acked, just after its rows became visible.
    flusher = running.monitor.flusher
    assert flusher is not None
    await wait_until(lambda: flusher.batches >= 1, timeout=10, message="the batch acked")
    assert metric("lms_batches_flushed_total", trigger="interval") - interval_batches == 1
    assert flusher.batches == 1


async def test_nothing_is_acked_before_commit(settings, run_monitor) -> None:
    """Hold a table lock so the batch cannot commit, crash the monitor, and see the messages
    come back: they were never acked. A fresh monitor then stores each exactly once."""
    s = settings(batchsize=5, flushinterval=600, ack_deadline=10)
    await prepare(s)
    acked_before = metric("lms_messages_acked_total")
    crashed = run_monitor(s)
    await wait_until(lambda: crashed.monitor.ready, timeout=20, message="monitor subscribed")
    blocker = await _lock_tables(s)
    try:
        await publish(s, [make_log("svc-c", "error", f"m{i}") for i in range(5)])
        await wait_until(
            lambda: _lock_waiters(s), timeout=20, message="the batch INSERT waits on the lock"
        )
        assert metric("lms_messages_acked_total") == acked_before
        crashed.task.cancel()  # a crash: no flush, no ack, no nack
        with contextlib.suppress(asyncio.CancelledError):
            await crashed.task
    finally:
        await blocker.ensure_closed()
    assert await count_logs(s) == 0
    received_before = metric("lms_messages_received_total")
    run_monitor(s)
    await wait_until(lambda: _equals(count_logs(s), 5), timeout=40, message="redelivered")
    assert metric("lms_messages_received_total") - received_before >= 5
    await assert_consistent(s, {("svc-c", "error"): 5})


async def test_redelivered_message_is_stored_once(settings, run_monitor) -> None:
    """A commit whose ack was lost: the rows exist, Pub/Sub delivers the messages again."""
    s = settings(batchsize=4, flushinterval=1)
    storage = BatchWriter(s)
    await prepare(s)
    await publish(s, [make_log("svc-d", "debug", f"m{i}") for i in range(4)])
    async with subscriber_client(s) as client:
        pulled = []
        while len(pulled) < 4:
            response = await client.pull(subscription=s.subscription_path, max_messages=10)
            pulled += list(response.received_messages)
        applied = await Migrator(s).applied_at(KEYS_MIGRATION)
        assert applied is not None
        logs = []
        for rm in pulled:
            record = parse_message(rm.message.data)
            assert isinstance(record, LogRecord)
            message = rm.message
            micros = int(message.publish_time.timestamp() * 1_000_000)
            key = message_key(
                message.message_id, micros, dict(message.attributes), int(applied * 1_000_000)
            )
            logs.append(StoredLog(message.message_id, record, key))  # as lms mon keys it
        first = await storage.write_batch(logs, [])  # committed, then "crash": no ack
        await storage.close()
        assert first.new == 4
        await client.modify_ack_deadline(
            subscription=s.subscription_path,
            ack_ids=[rm.ack_id for rm in pulled],
            ack_deadline_seconds=0,
        )
    duplicates = metric("lms_messages_duplicate_total")
    run_monitor(s)
    await wait_until(
        lambda: metric("lms_messages_duplicate_total") - duplicates >= 4,
        timeout=20,
        message="the redeliveries were seen as duplicates",
    )
    await publish(s, [make_log("svc-d", "debug", "fresh")])
    await wait_until(lambda: _equals(count_logs(s), 5), timeout=20, message="fresh stored")
    assert await severity_rows(s) == [("svc-d", "debug", 4), ("svc-d", "debug", 1)]
    await assert_consistent(s, {("svc-d", "debug"): 5})
    await wait_until(lambda: _equals(subscription_backlog(s), 0), timeout=20)


async def test_malformed_message_is_rejected_and_daemon_goes_on(settings, run_monitor) -> None:
    s = settings(batchsize=100, flushinterval=0.5)
    await prepare(s)
    run_monitor(s)
    bad = [b"not json", b"\xff\xfe", b"[1, 2]", make_log("svc-e", "loud", "x")]
    await publish(s, bad)
    await wait_until(
        lambda: _equals(_count(s, "rejected_messages"), 4), timeout=20, message="4 rejected"
    )
    rows = await db_query(s, "SELECT reason, data, data_size FROM rejected_messages")
    assert sorted(r[0] for r in rows) == [
        "invalid_field",
        "invalid_json",
        "invalid_utf8",
        "not_an_object",
    ]
    assert sorted(bytes(r[1]) for r in rows) == sorted(bad)
    assert all(r[2] == len(r[1]) for r in rows)
    await publish(s, [make_log("svc-e", "info", "still alive")])
    await wait_until(lambda: _equals(count_logs(s), 1), timeout=20, message="daemon goes on")
    await assert_consistent(s, {("svc-e", "info"): 1})


async def test_two_replicas_share_a_subscription(settings, run_monitor) -> None:
    s = settings(batchsize=50, flushinterval=0.5)
    await prepare(s)
    first, second = run_monitor(s), run_monitor(s)
    messages = [make_log(f"svc-{i % 3}", ("info", "warn")[i % 2], f"m{i}") for i in range(2000)]
    await publish(s, messages)
    await wait_until(lambda: _equals(count_logs(s), 2000), timeout=60, message="all stored")
    expected: dict[tuple[str, str], int] = {}
    for i in range(2000):
        key = (f"svc-{i % 3}", ("info", "warn")[i % 2])
        expected[key] = expected.get(key, 0) + 1
    await assert_consistent(s, expected)
    assert first.monitor.flusher is not None and second.monitor.flusher is not None
    assert first.monitor.flusher.batches > 0 and second.monitor.flusher.batches > 0


async def test_database_down_at_start_up_is_waited_for(settings, run_monitor, tcp_proxy) -> None:
    base = settings()
    proxy = await tcp_proxy(base.mysql_host, base.mysql_port)
    await proxy.cut()
    s = settings(mysql_port=proxy.port, batchsize=10, flushinterval=0.5)
    with structlog.testing.capture_logs() as events:
        running = run_monitor(s)
        await ensure_resources(s)
        await publish(s, [make_log("svc-f", "fatal", f"m{i}") for i in range(3)])

        def waits() -> list[dict[str, object]]:
            return [e for e in events if e["event"] == "database not reachable, waiting"]

        # Not just "nothing happened yet": a first attempt failed, and so did a retry after
        # its backoff, both against the (cut) database, and the monitor is still waiting.
        await wait_until(
            lambda: any(e["attempt"] >= 2 for e in waits()),
            timeout=30,
            message="the monitor retried its first connection",
        )
        assert [e["attempt"] for e in waits()] == list(range(1, len(waits()) + 1))
        assert all(e["port"] == proxy.port and e["error"] for e in waits()), waits()
        assert not running.task.done()
        assert running.monitor.subscriber is None
        assert not any(e["event"] == "monitor started" for e in events)
        await proxy.restore()
        await wait_until(lambda: _equals(count_logs(base), 3), timeout=30, message="stored")
        assert any(e["event"] == "monitor started" for e in events)


async def test_database_error_mid_run_rolls_back_and_retries(
    settings, run_monitor, tcp_proxy
) -> None:
    base = settings()
    proxy = await tcp_proxy(base.mysql_host, base.mysql_port)
    s = settings(mysql_port=proxy.port, batchsize=10, flushinterval=0.3)
    await prepare(s)
    running = run_monitor(s)
    # Ready: start-up (migrations, the writer's connection) is over, so the cut below hits
    # the flusher's writes and not the start-up, whose waiting counts no DB error.
    await wait_until(lambda: running.monitor.ready, timeout=10, message="monitor started")
    await wait_until(lambda: proxy.connections, timeout=10, message="writer connected")
    errors = metric("lms_db_errors_total")
    await proxy.cut(reset=True)
    await publish(s, [make_log("svc-g", "info", f"m{i}") for i in range(25)])
    await wait_until(
        lambda: metric("lms_db_errors_total") > errors, timeout=20, message="a DB error"
    )
    await proxy.restore()
    await wait_until(lambda: _equals(count_logs(base), 25), timeout=60, message="all stored")
    await assert_consistent(base, {("svc-g", "info"): 25})
    await wait_until(lambda: _equals(subscription_backlog(base), 0), timeout=20)


async def test_sigterm_flushes_what_is_buffered(settings, lms_mon) -> None:
    s = settings(batchsize=1000, flushinterval=600)
    await prepare(s)
    mon = lms_mon(s)
    await mon.wait_started()
    await publish(s, [make_log("svc-h", "warn", f"m{i}") for i in range(7)])
    await wait_until(lambda: mon.received >= 7, timeout=30, message="7 pulled")
    assert await count_logs(s) == 0
    assert await mon.stop(timeout=20) == 0
    assert [(b["size"], b["trigger"]) for b in mon.batches] == [(7, "shutdown")]
    await assert_consistent(s, {("svc-h", "warn"): 7})
    assert await subscription_backlog(s) == 0


async def test_timestamps_are_stored_in_utc(settings, run_monitor) -> None:
    s = settings(batchsize=1, flushinterval=0.2)
    await prepare(s)
    run_monitor(s)
    await publish(s, [make_log("svc-i", "info", "tz", timestamp="2024-05-01T14:30:00.5+02:00")])
    await wait_until(lambda: _equals(count_logs(s), 1), timeout=20)
    rows = await db_query(s, "SELECT `timestamp` FROM service_logs")
    assert rows[0][0] == datetime(2024, 5, 1, 12, 30, 0, 500000, tzinfo=UTC).replace(tzinfo=None)


async def _equals(value: object, expected: object) -> bool:
    if asyncio.iscoroutine(value):
        value = await value
    return value == expected


async def _count(settings: Settings, table: str) -> int:
    return int((await db_query(settings, f"SELECT COUNT(*) FROM {table}"))[0][0])


async def _lock_tables(settings: Settings) -> aiomysql.Connection:
    conn = await aiomysql.connect(**connect_kwargs(settings, settings.mysql_database))
    async with conn.cursor() as cur:
        await cur.execute("LOCK TABLES service_logs WRITE")
    return conn


async def _lock_waiters(settings: Settings) -> bool:
    rows = await db_query(
        settings,
        "SELECT COUNT(*) FROM information_schema.processlist"
        " WHERE db = %s AND state LIKE %s AND info LIKE %s",
        (settings.mysql_database, "%lock%", "%INSERT%service_logs%"),
    )
    return int(rows[0][0]) > 0


@pytest.mark.parametrize("mode", ["pull", "streaming"])
async def test_pull_modes_store_everything_within_flow_control(settings, run_monitor, mode):
    s = settings(batchsize=50, flushinterval=0.3, max_outstanding=100, pull_mode=mode, pullers=2)
    await prepare(s)
    running = run_monitor(s)
    await wait_until(lambda: running.monitor.ready, timeout=20, message="subscribed")
    await publish(s, [make_log("svc-j", "info", f"m{i}") for i in range(600)])
    await wait_until(lambda: _equals(count_logs(s), 600), timeout=60, message="600 stored")
    assert running.monitor.dispatcher is not None
    # The high-water mark of flow control itself, not a sample that could miss a peak.
    assert 0 < running.monitor.dispatcher.flow.peak <= 100
    await running.shutdown()
    await assert_consistent(s, {("svc-j", "info"): 600})
    assert await subscription_backlog(s) == 0


async def test_large_messages_are_held_to_the_byte_bound(settings, run_monitor) -> None:
    """Count bounds alone would let these 80 messages (4 MB) all be held at once; the byte
    bound holds them to 250 kB, batches are cut by bytes, and each is stored once."""
    s = settings(
        batchsize=1000,
        flushinterval=0.5,
        max_outstanding=2000,
        max_outstanding_bytes=250_000,
        batch_max_bytes=60_000,
    )
    await prepare(s)
    by_bytes = metric("lms_batches_flushed_total", trigger="bytes")
    valid = [
        make_log("svc-big", "info", f"m{i}", metadata={"blob": "x" * 15_000}) for i in range(40)
    ]
    invalid = [b"{" + b"x" * 50_000 for _ in range(40)]  # rejected: invalid JSON
    await publish(s, [body for pair in zip(valid, invalid, strict=True) for body in pair])
    running = run_monitor(s)
    await wait_until(
        lambda: _equals(_count(s, "rejected_messages"), 40), timeout=60, message="40 rejected"
    )
    await wait_until(lambda: _equals(count_logs(s), 40), timeout=30, message="40 stored")
    flow = running.monitor.dispatcher.flow if running.monitor.dispatcher else None
    assert flow is not None
    assert 150_000 < flow.peak_bytes <= 250_000  # reached, never passed
    await running.shutdown()
    assert metric("lms_batches_flushed_total", trigger="bytes") - by_bytes >= 10
    await assert_consistent(s, {("svc-big", "info"): 40})
    rows = await db_query(
        s, "SELECT COUNT(DISTINCT message_id), MAX(LENGTH(data)) FROM rejected_messages"
    )
    assert (int(rows[0][0]), int(rows[0][1])) == (40, 16 << 10)  # each once, a 16 KiB prefix
    assert await subscription_backlog(s) == 0


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("k" * 300, "has 300 characters, allowed at most 251"),
        ("k-1 ", "starts or ends with whitespace"),
        ("k\x1b[2J", "control character"),
    ],
    ids=["too long", "trailing space", "control character"],
)
async def test_a_producer_key_that_cannot_be_one_is_rejected_and_the_pipeline_goes_on(
    settings, run_monitor, key: str, problem: str
) -> None:
    """A producer publishing straight to Pub/Sub sets an lms_key the key column would refuse
    (too long) or confuse (`k-1 ` and `k-1` are one key under PAD SPACE): the message is
    rejected with why, under its own message key, and nothing of it is stored altered."""
    s = settings(batchsize=100, flushinterval=1.0)
    await prepare(s)
    await publish(s, [make_log("svc-k", "info", f"m{i}") for i in range(20)])
    [bad_id] = await publish(s, [make_log("svc-k", "error", "its key is wrong")], {"lms_key": key})
    running = run_monitor(s)
    await wait_until(lambda: _equals(count_logs(s), 20), timeout=30, message="20 stored")
    await wait_until(
        lambda: _equals(_count(s, "rejected_messages"), 1), timeout=30, message="1 rejected"
    )
    rows = await db_query(
        s, "SELECT message_id, idempotency_key, reason, detail, data FROM rejected_messages"
    )
    message_id, stored_key, reason, detail, data = rows[0]
    assert (message_id, reason) == (bad_id, "invalid_field")
    assert detail.startswith("attribute lms_key") and problem in detail, detail
    assert stored_key.startswith(f"{bad_id}@")  # its own key, not the producer's
    assert b"its key is wrong" in bytes(data)
    assert await db_query(s, "SELECT COUNT(*) FROM service_logs WHERE severity = 'error'") == [(0,)]
    await publish(s, [make_log("svc-k", "info", "still going")])
    await wait_until(lambda: _equals(count_logs(s), 21), timeout=30, message="the monitor goes on")
    await running.shutdown()
    await assert_consistent(s, {("svc-k", "info"): 21})
    assert await subscription_backlog(s) == 0
