"""The write side: the one transaction that stores a batch (its rows, their per-severity
counts and the rejected messages), so a batch is stored whole or not at all.

A single writer connection is enough (one flusher owns the buffer) and makes failure handling
simple: any error or timeout closes the connection, and the next attempt opens a fresh one, so
a half-finished transaction can never be reused.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomysql
import pymysql
import structlog

from lms.domain.record import LogRecord, Rejection
from lms.settings import Settings
from lms.store.connection import connect
from lms.store.errors import DATABASE_ERRORS, classify

log = structlog.get_logger(__name__)

MAX_REJECTED_DATA = 1 << 20
MAX_DETAIL = 1024

_INSERT_LOG = (
    "INSERT IGNORE INTO service_logs"
    " (idempotency_key, message_id, batch_id, service_name, payload, severity, `timestamp`,"
    " resource_id, trace_id, span_id, `commit`, metadata)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_COUNT_NEW = (
    "SELECT service_name, severity, COUNT(*) FROM service_logs"
    " WHERE batch_id = %s GROUP BY service_name, severity"
)
_INSERT_SEVERITY = (
    "INSERT INTO service_severity (service_name, severity, `count`, created_at)"
    " VALUES (%s, %s, %s, %s)"
)
_INSERT_REJECTED = (
    "INSERT IGNORE INTO rejected_messages"
    " (idempotency_key, message_id, reason, detail, data, data_size, received_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True, slots=True)
class StoredLog:
    """A log to store; `key` is its idempotency key (the message id when None)."""

    message_id: str
    record: LogRecord
    key: str | None = None

    @property
    def idempotency_key(self) -> str:
        return self.key or self.message_id


@dataclass(frozen=True, slots=True)
class StoredRejection:
    """A rejected message to keep; `key` as for StoredLog."""

    message_id: str
    rejection: Rejection
    data: bytes
    received_at: datetime
    key: str | None = None

    @property
    def idempotency_key(self) -> str:
        return self.key or self.message_id


@dataclass(slots=True)
class BatchResult:
    """What one committed batch changed: only rows this transaction really inserted count."""

    new_by_key: dict[tuple[str, str], int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def new(self) -> int:
        return sum(self.new_by_key.values())

    @property
    def rejected_new(self) -> int:
        return sum(self.rejected_by_reason.values())


class BatchWriter:
    """Writes batches on one connection, used by one task at a time (the flusher)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: aiomysql.Connection | None = None

    async def write_batch(
        self, logs: Sequence[StoredLog], rejections: Sequence[StoredRejection]
    ) -> BatchResult:
        """Store one batch in one transaction, or raise StorageError having stored nothing;
        its `retriable` says whether the same batch may commit on a later attempt."""
        try:
            async with asyncio.timeout(self._settings.db_timeout):
                return await self._write_batch(logs, rejections)
        except DATABASE_ERRORS as exc:
            self._discard()
            raise classify(exc, "batch write") from exc
        except BaseException:
            self._discard()
            raise

    async def open(self) -> None:
        """Connect now rather than at the first batch, so start-up proves the writer can."""
        try:
            await self._connection()
        except DATABASE_ERRORS as exc:
            self._discard()
            raise classify(exc, "connecting the writer") from exc

    async def ping(self) -> None:
        """Check the database answers, on a short-lived connection of its own."""
        async with asyncio.timeout(min(self._settings.db_timeout, 5.0)):
            conn = await connect(self._settings, self._settings.mysql_database)
            try:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT 1")
            finally:
                conn.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.ensure_closed()
            except (pymysql.err.MySQLError, OSError):
                conn.close()  # the server already dropped it (e.g. a reset while idle)

    async def _write_batch(
        self, logs: Sequence[StoredLog], rejections: Sequence[StoredRejection]
    ) -> BatchResult:
        conn = await self._connection()
        result = BatchResult()
        batch_id = secrets.randbits(63)
        await conn.begin()
        async with conn.cursor() as cur:
            if logs:
                await cur.executemany(_INSERT_LOG, list(_log_rows(logs, batch_id)))
                inserted = max(cur.rowcount, 0)
                if inserted == len(logs):
                    # The usual case: every row is new, so the batch itself has the counts.
                    result.new_by_key = dict(
                        Counter((log.record.service_name, log.record.severity) for log in logs)
                    )
                elif inserted:
                    await cur.execute(_COUNT_NEW, (batch_id,))
                    result.new_by_key = {
                        (name, severity): count for name, severity, count in await cur.fetchall()
                    }
                if result.new_by_key:
                    now = datetime.now(UTC).replace(tzinfo=None)
                    await cur.executemany(
                        _INSERT_SEVERITY,
                        [(n, s, c, now) for (n, s), c in sorted(result.new_by_key.items())],
                    )
            by_reason: dict[str, list[StoredRejection]] = {}
            for item in rejections:
                by_reason.setdefault(item.rejection.reason.value, []).append(item)
            for reason, items in sorted(by_reason.items()):
                await cur.executemany(_INSERT_REJECTED, list(_rejection_rows(items)))
                if cur.rowcount > 0:
                    result.rejected_by_reason[reason] = cur.rowcount
        await conn.commit()
        return result

    async def _connection(self) -> aiomysql.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self._settings, self._settings.mysql_database)
        return self._conn

    def _discard(self) -> None:
        """Drop the connection without a round trip: its state is unknown after a failure."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _log_rows(logs: Sequence[StoredLog], batch_id: int) -> Iterable[tuple[object, ...]]:
    """Rows in key order, so concurrent replicas lock the unique index in one order.

    The timestamp goes as ISO text ('2026-11-23 10:00:00.123456', which DATETIME(6) reads
    exactly): the driver escapes a string several times faster than a datetime, once per row.
    """
    for log in sorted(logs, key=lambda item: item.idempotency_key):
        r = log.record
        yield (
            log.idempotency_key,
            log.message_id,
            batch_id,
            r.service_name,
            r.payload,
            r.severity,
            r.timestamp.isoformat(" "),
            r.resource_id,
            r.trace_id,
            r.span_id,
            r.commit,
            r.metadata,
        )


def _rejection_rows(rejections: Sequence[StoredRejection]) -> Iterable[tuple[object, ...]]:
    for item in sorted(rejections, key=lambda item: item.idempotency_key):
        yield (
            item.idempotency_key,
            item.message_id,
            item.rejection.reason.value,
            item.rejection.detail[:MAX_DETAIL],
            item.data[:MAX_REJECTED_DATA],
            len(item.data),
            item.received_at,
        )
