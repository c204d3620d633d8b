"""The write side of message patterns: each row's pattern_id, the counts of the rows a batch
really inserted (the four pattern rollups of sql/013) and the template of each new pattern
(log_patterns), all in the batch's own transaction (lms/store/sql/009_patterns.sql).

Counts follow the rule that keeps service_severity exact: when every row of the batch was
new, the batch itself has the counts; when some were duplicates (a redelivery, another
replica's copy), they are read back by batch_id, so only rows this transaction inserted
count. Each tier holds one row per key, the batch's counts added to it by INSERT ... ON
DUPLICATE KEY UPDATE (VALUES(col): MariaDB knows no `AS new` alias), rows in primary-key
order and tier after tier, so replicas upserting the same keys lock them in one order (a
deadlock that still happens is retriable, and the whole batch is retried). Templates are
computed here, in Python (lms.domain.patterns), never by the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import aiomysql

from lms.domain.patterns import pattern_of
from lms.domain.record import LogRecord

Pattern = tuple[int, str]
"""(pattern id, template)."""
CountKey = tuple[str, str, str, int]
"""(hour of the log's timestamp as DATETIME text, service, severity, pattern id)."""

_COUNT_NEW = (
    "SELECT DATE_FORMAT(`timestamp`, '%%Y-%%m-%%d %%H:00:00'), service_name, severity,"
    " pattern_id, COUNT(*) FROM service_logs WHERE batch_id = %s"
    " GROUP BY 1, service_name, severity, pattern_id"
)


def _upsert(table: str, key: str) -> str:
    """The upsert of one tier: `key` its primary key's columns, in order, then the count."""
    marks = ", ".join(["%s"] * (key.count(",") + 2))
    return (
        f"INSERT INTO {table} ({key}, `count`) VALUES ({marks})"
        " ON DUPLICATE KEY UPDATE `count` = `count` + VALUES(`count`)"
    )


UPSERT_HOURS = _upsert("pattern_rollup", "hour_start, pattern_id, severity")
UPSERT_DAYS = _upsert("pattern_rollup_day", "day_start, pattern_id, severity")
UPSERT_SERVICE_HOURS = _upsert(
    "pattern_service_rollup", "service_name, hour_start, pattern_id, severity"
)
UPSERT_SERVICE_DAYS = _upsert(
    "pattern_service_rollup_day", "service_name, day_start, pattern_id, severity"
)
_INSERT_PATTERNS = (
    "INSERT IGNORE INTO log_patterns (pattern_id, template, first_seen) VALUES (%s, %s, %s)"
)
MAX_KNOWN = 65_536
"""Pattern ids remembered as stored in log_patterns (about 6 MB at most); when full, the set
starts again, and a known pattern only costs one more INSERT IGNORE."""


class _Keyed(Protocol):
    @property
    def record(self) -> LogRecord: ...


class _MaybeMasked(_Keyed, Protocol):
    @property
    def pattern(self) -> Pattern | None: ...


def patterns_of(logs: Sequence[_MaybeMasked]) -> list[Pattern]:
    """The pattern of each log, in the order of `logs`: the one it carries, or masked now."""
    return [log.pattern or pattern_of(log.record.payload) for log in logs]


def hour_of(moment: datetime) -> str:
    """The start of the UTC hour that holds `moment`, as the text DATE_FORMAT gives it (the
    driver escapes a string several times faster than a datetime, and this runs once per
    row); its first 10 characters are the day, as DATE text."""
    return f"{moment.isoformat(' ')[:13]}:00:00"


def tier_rows(counts: Counter[CountKey]) -> list[tuple[str, list[tuple[object, ...]]]]:
    """The upserts that add `counts` to the four tiers, each with its rows in primary-key
    order: service hours, service days, hours, days (one lock order for every writer)."""
    service_days: Counter[tuple[str, str, int, str]] = Counter()
    hours: Counter[tuple[str, int, str]] = Counter()
    days: Counter[tuple[str, int, str]] = Counter()
    service_hours = []
    for (hour, service, severity, pid), n in counts.items():
        service_hours.append((service, hour, pid, severity, n))
        service_days[(service, hour[:10], pid, severity)] += n
        hours[(hour, pid, severity)] += n
        days[(hour[:10], pid, severity)] += n
    return [
        (UPSERT_SERVICE_HOURS, sorted(service_hours)),
        (UPSERT_SERVICE_DAYS, [(*k, n) for k, n in sorted(service_days.items())]),
        (UPSERT_HOURS, [(*k, n) for k, n in sorted(hours.items())]),
        (UPSERT_DAYS, [(*k, n) for k, n in sorted(days.items())]),
    ]


class PatternRollup:
    """Writes a batch's pattern rows; one per BatchWriter, used by one task at a time."""

    def __init__(self) -> None:
        self._known: set[int] = set()
        self._pending: set[int] = set()

    async def write(
        self,
        cur: aiomysql.Cursor,
        batch_id: int,
        logs: Sequence[_Keyed],
        patterns: Sequence[Pattern],
        all_new: bool,
    ) -> None:
        """Count the batch's inserted rows per key and store the templates not stored yet."""
        self._pending = set()
        if all_new:
            counts: Counter[CountKey] = Counter(
                (hour_of(log.record.timestamp), log.record.service_name, log.record.severity, pid)
                for log, (pid, _) in zip(logs, patterns, strict=True)
            )
        else:
            await cur.execute(_COUNT_NEW, (batch_id,))
            counts = Counter(
                {
                    (str(hour), name, severity, int(pid)): int(n)
                    for hour, name, severity, pid, n in await cur.fetchall()
                }
            )
        if not counts:
            return
        for sql, rows in tier_rows(counts):
            await cur.executemany(sql, rows)
        new = {pid for _, _, _, pid in counts} - self._known
        if new:
            await self._store_templates(cur, new, logs, patterns)

    async def _store_templates(
        self,
        cur: aiomysql.Cursor,
        new: set[int],
        logs: Sequence[_Keyed],
        patterns: Sequence[Pattern],
    ) -> None:
        """Insert the patterns not known to be stored, with the earliest timestamp of the
        batch's logs of each, in one multi-row INSERT IGNORE (a pattern another replica
        stored meanwhile is skipped; sorted, so replicas lock in one order). Nothing is read
        back: the example a reader shows is the newest log of the pattern in its range."""
        first: dict[int, tuple[str, datetime]] = {}
        for log, (pid, template) in zip(logs, patterns, strict=True):
            if pid in new and (pid not in first or log.record.timestamp < first[pid][1]):
                first[pid] = (template, log.record.timestamp)
        rows = sorted(
            (pid, template, seen.isoformat(" ")) for pid, (template, seen) in first.items()
        )
        await cur.executemany(_INSERT_PATTERNS, rows)
        self._pending = set(first)

    def rolled_back(self) -> None:
        """The batch did not commit: its new templates are not stored."""
        self._pending = set()

    def committed(self) -> None:
        """The batch committed: its new templates are in log_patterns now."""
        if len(self._known) + len(self._pending) > MAX_KNOWN:
            self._known.clear()
        self._known |= self._pending
        self._pending = set()
