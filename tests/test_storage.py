"""The write side against real MariaDB: what a batch counts, what it stores exactly, what the
database refuses (never stored altered), and a write that times out (killed on the server)."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable
from datetime import datetime

import aiomysql
import pytest
from pymysql.converters import escape_string

from lms.domain.record import LogRecord, Reason, Rejection
from lms.ingest.pipeline.storing import BatchStore, Parsed
from lms.ingest.received import Received
from lms.settings import Settings
from lms.store.connection import connect_kwargs, quote_string
from lms.store.errors import DataStorageError, RetriableStorageError
from lms.store.migrations import Migrator, migration_files
from lms.store.writer import MAX_REJECTED_DATA, BatchWriter, StoredLog, StoredRejection
from tests.helpers import db_query, wait_until

DIGEST_MIGRATION = "006_rejected_digest.sql"


def stored(number: int, service: str, severity: str, timestamp: datetime) -> StoredLog:
    return StoredLog(f"id-{number}", LogRecord(service, f"log {number}", severity, timestamp))


async def test_a_batch_counts_only_the_rows_it_inserted(settings) -> None:
    s = settings()
    storage = BatchWriter(s)
    await Migrator(s).migrate()
    moment = datetime(2026, 11, 23, 10, 0, 0, 123456)
    keys = [("svc-a", "info"), ("svc-a", "error"), ("svc-b", "info")]
    first = [stored(i, *keys[i % 3], moment) for i in range(9)]
    try:
        result = await storage.write_batch(first, [])
        assert result.new_by_key == {key: 3 for key in keys}
        assert len(first) - result.new == 0  # no duplicates

        # A redelivery of four logs in a batch with five new ones: only the new ones count.
        again = first[:4] + [stored(i, *keys[i % 3], moment) for i in range(9, 14)]
        result = await storage.write_batch(again, [])
        assert len(again) - result.new == 4  # four duplicates
        assert result.new_by_key == Counter(keys[i % 3] for i in range(9, 14))

        # All duplicates: nothing counted.
        result = await storage.write_batch(first[4:], [])
        assert (result.new, len(first[4:]) - result.new) == (0, 5)
    finally:
        await storage.close()

    logs = await db_query(
        s, "SELECT service_name, severity, COUNT(*) FROM service_logs GROUP BY 1, 2"
    )
    sums = await db_query(
        s, "SELECT service_name, severity, SUM(`count`) FROM service_severity GROUP BY 1, 2"
    )
    assert sorted((a, b, int(c)) for a, b, c in logs) == sorted((a, b, int(c)) for a, b, c in sums)
    assert sum(int(c) for *_, c in logs) == 14


async def test_timestamps_are_stored_to_the_microsecond(settings) -> None:
    s = settings()
    storage = BatchWriter(s)
    await Migrator(s).migrate()
    moments = [
        datetime(2026, 11, 23, 10, 0, 0),
        datetime(2026, 11, 23, 10, 0, 0, 1),
        datetime(1000, 1, 1, 0, 0, 0, 999999),
        datetime(9999, 12, 31, 23, 59, 59, 999999),
    ]
    try:
        await storage.write_batch(
            [stored(i, "svc", "info", moment) for i, moment in enumerate(moments)], []
        )
    finally:
        await storage.close()
    rows = await db_query(s, "SELECT `timestamp` FROM service_logs ORDER BY message_id")
    assert [row[0] for row in rows] == moments


async def test_every_character_the_writer_escapes_is_stored_exactly(settings) -> None:
    """The writer builds its string literals itself (lms.store.connection.quote_string):
    each character PyMySQL escapes, alone, doubled and next to the others, quotes of both
    kinds and non-ASCII text come back from the database as they were sent, and the SQL
    text is the driver's own."""
    specials = ["\\", "\0", "\n", "\r", "\x1a", '"', "'"]
    payloads = [
        *specials,
        *(c * 2 for c in specials),
        "".join(specials),
        "\\'" + "".join(reversed(specials)) + "\\",
        "end with a backslash \\",
        'it\'s "quoted" \\n not a newline; é ü 日本 \U0001f600',
        "",
    ]
    for text in [*payloads, "a\\'b"]:
        assert quote_string(text) == "'" + escape_string(text) + "'"
    s = settings()
    storage = BatchWriter(s)
    await Migrator(s).migrate()
    moment = datetime(2026, 12, 1, 10, 0)
    logs = [
        StoredLog(f"id-{i:02d}", LogRecord("svc", text, "info", moment, trace_id=f"t'{i}\\"))
        for i, text in enumerate(payloads)
    ]
    try:
        await storage.write_batch(logs, [])
    finally:
        await storage.close()
    rows = await db_query(s, "SELECT payload, trace_id FROM service_logs ORDER BY message_id")
    assert [tuple(row) for row in rows] == [(text, f"t'{i}\\") for i, text in enumerate(payloads)]


# --- what the database refuses is never stored altered (issue 14) -----------------------


def received_for(number: int, data: bytes, key: str | None = None) -> Received:
    return Received(f"ack-{number}", f"id-{number}", data, 0.0, datetime(2026, 12, 1), key)


def parsed_log(number: int, record: LogRecord) -> Parsed:
    """A log as the flusher holds it, built directly: the parser would refuse these values,
    so only the database stands between them and the table."""
    return Parsed(received_for(number, f"body {number}".encode()), record)


async def test_an_over_long_value_raises_instead_of_being_stored_truncated(settings) -> None:
    s = settings()
    await Migrator(s).migrate()
    storage = BatchWriter(s)
    moment = datetime(2026, 12, 1, 8, 0)
    try:
        for record, column in [
            (LogRecord("s" * 101, "p", "info", moment), "service_name"),  # VARCHAR(100)
            (LogRecord("svc", "p", "loud", moment), "severity"),  # not an ENUM value
            (LogRecord("svc", "p" * 2049, "info", moment), "payload"),  # VARCHAR(2048)
        ]:
            with pytest.raises(DataStorageError) as raised:
                await storage.write_batch([StoredLog("id-1", record)], [])
            assert column in raised.value.reason
    finally:
        await storage.close()
    assert await db_query(s, "SELECT service_name, severity FROM service_logs") == []
    assert await db_query(s, "SELECT COUNT(*) FROM service_severity") == [(0,)]


async def test_refused_rows_are_rejected_with_the_reason_and_the_rest_stored_exactly(
    settings,
) -> None:
    s = settings()
    await Migrator(s).migrate()
    storage = BatchWriter(s)
    store = BatchStore(storage, max_backoff=0.01)
    moment = datetime(2026, 12, 1, 8, 0)
    first = [parsed_log(n, LogRecord("svc-a", f"log {n}", "info", moment)) for n in range(6)]
    try:
        await store.store(first)
        batch = [
            *first[:3],  # duplicates: ignored, counted nowhere
            *(parsed_log(n, LogRecord("svc-a", f"log {n}", "warn", moment)) for n in range(6, 16)),
            parsed_log(16, LogRecord("s" * 101, "too long", "info", moment)),
            parsed_log(17, LogRecord("svc-a", "unknown severity", "loud", moment)),
        ]
        result = await store.store(batch)
    finally:
        await storage.close()
    assert result.new_by_key == {("svc-a", "warn"): 10}
    assert result.rejected_by_reason == {"invalid_field": 2}
    rejected = await db_query(
        s, "SELECT message_id, reason, detail FROM rejected_messages ORDER BY message_id"
    )
    assert [(mid, reason) for mid, reason, _ in rejected] == [
        ("id-16", "invalid_field"),
        ("id-17", "invalid_field"),
    ]
    # INSERT IGNORE reports the over-long value as a truncation warning, counted as a
    # data error (strict mode alone would say 1406, Data too long).
    assert rejected[0][2].startswith("refused by the database: (1265) Data truncated")
    assert "service_name" in rejected[0][2]
    assert rejected[1][2].startswith("refused by the database: (1265) Data truncated")
    assert "severity" in rejected[1][2]
    stored = await db_query(s, "SELECT message_id FROM service_logs")
    assert sorted(row[0] for row in stored) == sorted(f"id-{n}" for n in range(16))
    logs = await db_query(
        s, "SELECT service_name, severity, COUNT(*) FROM service_logs GROUP BY 1, 2"
    )
    sums = await db_query(
        s, "SELECT service_name, severity, SUM(`count`) FROM service_severity GROUP BY 1, 2"
    )
    assert sorted((a, b, int(c)) for a, b, c in logs) == [
        ("svc-a", "info", 6),
        ("svc-a", "warn", 10),
    ]
    assert sorted((a, b, int(c)) for a, b, c in sums) == [
        ("svc-a", "info", 6),
        ("svc-a", "warn", 10),
    ]


async def test_a_rejected_body_is_kept_as_a_prefix_with_its_size_and_digest(settings) -> None:
    s = settings()
    await Migrator(s).migrate()
    storage = BatchWriter(s)
    body = b"{" + bytes(range(256)) * 400  # 102,401 bytes, not JSON
    small = b"[1, 2]"
    try:
        result = await storage.write_batch(
            [],
            [
                StoredRejection("id-1", Rejection(Reason.INVALID_JSON, "no"), body, moment()),
                StoredRejection("id-2", Rejection(Reason.NOT_AN_OBJECT, "no"), small, moment()),
            ],
        )
    finally:
        await storage.close()
    assert result.rejected_by_reason == {"invalid_json": 1, "not_an_object": 1}
    rows = await db_query(
        s, "SELECT data, data_size, data_sha256 FROM rejected_messages ORDER BY message_id"
    )
    assert rows[0] == (body[:MAX_REJECTED_DATA], len(body), hashlib.sha256(body).hexdigest())
    assert rows[1] == (small, len(small), hashlib.sha256(small).hexdigest())
    assert MAX_REJECTED_DATA == 16 << 10


def moment() -> datetime:
    return datetime(2026, 12, 1, 8, 0)


async def statements_running(settings: Settings, prefix: str) -> int:
    rows = await db_query(
        settings,
        "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s AND info LIKE %s",
        (settings.mysql_database, prefix + "%"),
    )
    return int(rows[0][0])


async def test_a_timed_out_write_is_killed_on_the_server_and_its_retry_commits(settings) -> None:
    """The write inserts ten rows, then waits for a row lock another transaction holds; when
    DB_TIMEOUT passes, its statement must not go on waiting on the server (for
    innodb_lock_wait_timeout, holding the locks of its ten rows against its own retry): it
    is killed there, not only abandoned by the client."""
    s = settings(db_timeout=1.5)
    await Migrator(s).migrate()
    storage = BatchWriter(s)
    logs = [stored(n, "svc", "info", moment()) for n in range(20)]
    blocker = await aiomysql.connect(**connect_kwargs(s, s.mysql_database))
    try:
        async with blocker.cursor() as cur:
            await cur.execute("SET SESSION innodb_lock_wait_timeout = 60")
            await blocker.begin()
            await cur.execute(  # the key of the 11th log (keys sort as strings: id-10 ...)
                "INSERT INTO service_logs (idempotency_key, message_id, batch_id, service_name,"
                " payload, severity, `timestamp`) VALUES (%s, %s, 0, 'svc', 'x', 'info', %s)",
                (sorted(log.idempotency_key for log in logs)[10], "blocker", moment()),
            )
        with pytest.raises(RetriableStorageError, match="timed out"):
            await storage.write_batch(logs, [])
        await wait_until(
            lambda: _is(statements_running(s, "INSERT INTO service_logs"), 0),
            timeout=3,
            message="the timed-out statement is gone from the server",
        )
        await blocker.rollback()
        async with asyncio.timeout(10):
            result = await storage.write_batch(logs, [])
    finally:
        blocker.close()
        await storage.close()
    assert result.new == 20  # the killed attempt stored nothing: it was rolled back
    assert await db_query(s, "SELECT COUNT(*) FROM service_logs") == [(20,)]
    assert await db_query(s, "SELECT SUM(`count`) FROM service_severity") == [(20,)]


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_migration_006_gives_whole_rejected_bodies_their_digest(settings, tmp_path) -> None:
    """Rows rejected before it keep their data; a body that was kept whole gets its SHA-256,
    one that was cut at 1 MiB (its digest unknowable now) keeps NULL."""
    s = settings()
    older = tmp_path / "sql"
    older.mkdir()
    for script in migration_files():
        if script.name < DIGEST_MIGRATION:
            (older / script.name).write_text(script.read_text())
    await Migrator(s, older).migrate()
    whole, cut = b"not json", bytes(1 << 20)
    for key, data, size in [("m1", whole, len(whole)), ("m2", cut, 5 << 20)]:
        await db_query(
            s,
            "INSERT INTO rejected_messages (idempotency_key, message_id, reason, detail, data,"
            " data_size, received_at) VALUES (%s, %s, 'invalid_json', 'd', %s, %s, %s)",
            (key, key, data, size, moment()),
        )
    assert (await Migrator(s).migrate())[0] == DIGEST_MIGRATION  # then any later ones
    rows = await db_query(
        s, "SELECT message_id, data_size, data_sha256 FROM rejected_messages ORDER BY message_id"
    )
    assert rows == [("m1", len(whole), hashlib.sha256(whole).hexdigest()), ("m2", 5 << 20, None)]
