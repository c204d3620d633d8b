"""Storage.write_batch against real MariaDB: what a batch counts, and what it stores exactly."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from lms.domain.record import LogRecord
from lms.store.migrations import Migrator
from lms.store.writer import BatchWriter, StoredLog
from tests.helpers import db_query


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
