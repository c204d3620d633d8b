"""Parts b, b0 and b2: the bare database insert, the ceiling MySQL sets, and our own
transaction (BatchWriter.write_batch) on the same rows."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import aiomysql

from bench.pipeline.common import DB_BATCH, Context, Message, Meter, expect_consistent
from lms.devtools.database import connect_blocking
from lms.domain.record import LogRecord, parse_message
from lms.store.connection import connect_kwargs
from lms.store.migrations import Migrator
from lms.store.writer import BatchWriter, StoredLog

_BARE_INSERT = (
    "INSERT INTO service_logs"
    " (idempotency_key, message_id, batch_id, service_name, payload, severity, `timestamp`)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)

_BARE_SEVERITY = (
    "INSERT INTO service_severity (service_name, severity, `count`, created_at)"
    " VALUES (%s, %s, %s, %s)"
)


def parse_pool(pool: list[Message]) -> list[LogRecord]:
    records = []
    for data, _ in pool:
        outcome = parse_message(data)
        assert isinstance(outcome, LogRecord), outcome
        records.append(outcome)
    return records


async def part_database(ctx: Context, fulltext: bool = True) -> dict:
    """Multi-row INSERTs of 5,000 rows per transaction, plus their severity rows."""
    settings = ctx.settings("b" if fulltext else "b0")
    await Migrator(settings).migrate()
    if not fulltext:
        conn = connect_blocking(settings, settings.mysql_database)
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE service_logs DROP INDEX ft_service_logs_payload")
        conn.close()
    count = ctx.args.messages
    records = ctx.records
    conn = await aiomysql.connect(**connect_kwargs(settings, settings.mysql_database))
    meter = Meter(ctx).start()
    try:
        started = time.perf_counter()
        for batch, start in enumerate(range(0, count, DB_BATCH)):
            rows = []
            counts: Counter[tuple[str, str]] = Counter()
            for index in range(start, min(start + DB_BATCH, count)):
                r = records[index % len(records)]
                key = str(index + 1)
                rows.append((key, key, batch, r.service_name, r.payload, r.severity, r.timestamp))
                counts[r.service_name, r.severity] += 1
            now = datetime.now(UTC).replace(tzinfo=None)
            await conn.begin()
            async with conn.cursor() as cur:
                await cur.executemany(_BARE_INSERT, rows)
                await cur.executemany(
                    _BARE_SEVERITY, [(s, v, c, now) for (s, v), c in sorted(counts.items())]
                )
            await conn.commit()
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    usage = meter.stop()
    await expect_consistent(settings, ctx.expected(count))
    return {"rows": count, "seconds": seconds, "rate": count / seconds, **usage}


async def part_write_batch(ctx: Context) -> dict:
    """The same rows through Storage.write_batch: the duplicate-ignoring INSERT, the new-row
    count, severity."""
    settings = ctx.settings("b2")
    await Migrator(settings).migrate()
    storage = BatchWriter(settings)
    count = ctx.args.messages
    records = ctx.records
    meter = Meter(ctx).start()
    try:
        started = time.perf_counter()
        for start in range(0, count, DB_BATCH):
            logs = [
                StoredLog(str(index + 1), records[index % len(records)])
                for index in range(start, min(start + DB_BATCH, count))
            ]
            await storage.write_batch(logs, [])
        seconds = time.perf_counter() - started
    finally:
        await storage.close()
    usage = meter.stop()
    await expect_consistent(settings, ctx.expected(count))
    return {"rows": count, "seconds": seconds, "rate": count / seconds, **usage}
