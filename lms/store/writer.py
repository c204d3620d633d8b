"""The write side: the one transaction that stores a batch (its rows, their per-severity
counts and the rejected messages), so a batch is stored whole or not at all.

A single writer connection is enough (one flusher owns the buffer) and makes failure handling
simple: any error or timeout closes the connection, and the next attempt opens a fresh one, so
a half-finished transaction can never be reused. A timed-out transaction is also killed on the
server, from a second connection: abandoned, it would go on running and hold its locks against
its own retry until the server noticed the closed socket.

Duplicates, and only duplicates, are ignored. `INSERT IGNORE` skips a row whose key is
stored already (it counts nothing), but it would also store a value the database truncates or
coerces (an over-long string, an unknown ENUM value), with a warning. So the writer counts the
warnings of each insert: every skipped row accounts for one (a duplicate key); any warning
beyond those, or any of another kind, means a value was altered, and the batch fails with a
data error (rolled back, then split by lms.ingest.pipeline.storing) instead of being stored
altered. The connections also run in strict SQL mode. `INSERT ... ON DUPLICATE KEY UPDATE`
would need the UPDATE privilege, which `lms mon`'s database user has only on the request
rollups and commit_rollup (lms.store.request_rollup and lms.store.volume_rollup upsert them).
Both are valid on MariaDB and MySQL 8.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from lms.store.connection import WarningCountingCursor, connect
from lms.store.errors import DATA_ERROR_CODES, DATABASE_ERRORS, classify, error_code
from lms.store.patterns import Pattern, PatternRollup, patterns_of
from lms.store.request_rollup import add_request_rollup
from lms.store.volume_rollup import add_volume_rollup

log = structlog.get_logger(__name__)

UNKNOWN_THREAD = 1094
"""KILL of a connection that is gone already."""

MAX_REJECTED_DATA = 16 << 10
"""Bytes of a rejected message's body kept in rejected_messages.data (its full size and SHA-256
are kept too): enough to see what was sent, small enough that a batch of large rejected
messages still writes quickly."""
MAX_DETAIL = 1024
MAX_KEY = 255
"""Characters of an idempotency key (service_logs and rejected_messages)."""
MAX_MESSAGE_ID = 128
STRICT_SQL_MODE = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION"
"""The writer's SQL mode: a value that does not fit its column is an error, never altered."""
KILL_TIMEOUT = 5.0
"""Seconds at most to kill a timed-out transaction on the server (less when DB_TIMEOUT is)."""

_INSERT_LOG = (
    "INSERT IGNORE INTO service_logs"
    " (idempotency_key, message_id, batch_id, service_name, payload, severity, `timestamp`,"
    " resource_id, trace_id, span_id, `commit`, metadata, pattern_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
    " (idempotency_key, message_id, reason, detail, data, data_size, data_sha256, received_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


ALTERED_VALUE = 1265
"""The code a data error gets when the database altered a value but its warning is not one
of lms.store.errors' data errors, or was not among those SHOW WARNINGS returned (at most
max_error_count)."""


async def _insert_new(cur: WarningCountingCursor, sql: str, rows: list[tuple[object, ...]]) -> int:
    """INSERT IGNORE `rows`; the number inserted. Raises a data error (pymysql's DataError,
    which lms.store.errors classifies as one) when any value was altered: more warnings than
    skipped duplicates, or a warning of another kind."""
    cur.reset()
    await cur.executemany(sql, rows)
    inserted = max(int(cur.rowcount), 0)
    if cur.altered is not None or cur.warnings > len(rows) - inserted:
        code, message = cur.altered or (
            ALTERED_VALUE,
            "the database altered a value (a warning other than a duplicate key)",
        )
        if code not in DATA_ERROR_CODES:  # still the rows' fault: split, never stop
            code, message = ALTERED_VALUE, f"({code}) {message}"
        raise pymysql.err.DataError(code, message)
    return inserted


@dataclass(frozen=True, slots=True)
class StoredLog:
    """A log to store; `key` is its idempotency key (the message id when None); `pattern` its
    (pattern id, template) when the caller masked it already (lms.ingest.pipeline.flusher
    does, in its parse stage), else the writer masks it."""

    message_id: str
    record: LogRecord
    key: str | None = None
    pattern: tuple[int, str] | None = None

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

    def add(self, other: BatchResult) -> None:
        """Add what another transaction of the same batch changed (a batch split in parts)."""
        for key, count in other.new_by_key.items():
            self.new_by_key[key] = self.new_by_key.get(key, 0) + count
        for reason, count in other.rejected_by_reason.items():
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + count


class BatchWriter:
    """Writes batches on one connection, used by one task at a time (the flusher)."""

    def __init__(
        self,
        settings: Settings,
        patterns: bool = True,
        requests: bool = True,
        commits: bool = True,
    ) -> None:
        """`patterns` False stores no pattern (NULL pattern_id, no counts), `requests` False
        no request rollup, `commits` False no commit_rollup: only bench/ turns them off, to
        measure what they cost the write path."""
        self._settings = settings
        self._conn: aiomysql.Connection | None = None
        self._patterns = PatternRollup() if patterns else None
        self._requests = requests
        self._commits = commits

    async def write_batch(
        self, logs: Sequence[StoredLog], rejections: Sequence[StoredRejection]
    ) -> BatchResult:
        """Store one batch in one transaction, or raise StorageError having stored nothing;
        its `retriable` says whether the same batch may commit on a later attempt."""
        try:
            async with asyncio.timeout(self._settings.db_timeout):
                return await self._write_batch(logs, rejections)
        except TimeoutError as exc:
            await self._kill()
            self._discard()
            raise classify(exc, "batch write") from exc
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
                patterns = patterns_of(logs) if self._patterns else None
                rows = list(_log_rows(logs, batch_id, patterns))
                inserted = await _insert_new(cur, _INSERT_LOG, rows)
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
                # --- rollups of the rows this batch inserted (lms/store/patterns.py) ---
                if self._patterns is not None and patterns is not None and inserted:
                    all_new = inserted == len(logs)
                    await self._patterns.write(cur, batch_id, logs, patterns, all_new)
                if inserted:  # the rollups by the logs' own timestamps (sql/010, 011, 015)
                    await add_volume_rollup(
                        cur, logs, batch_id, inserted == len(logs), commits=self._commits
                    )
                    if self._requests:
                        await add_request_rollup(cur, logs, batch_id, inserted == len(logs))
            by_reason: dict[str, list[StoredRejection]] = {}
            for item in rejections:
                by_reason.setdefault(item.rejection.reason.value, []).append(item)
            for reason, items in sorted(by_reason.items()):
                stored = await _insert_new(cur, _INSERT_REJECTED, list(_rejection_rows(items)))
                if stored:
                    result.rejected_by_reason[reason] = stored
        await conn.commit()
        if self._patterns is not None:
            self._patterns.committed()
        return result

    async def _connection(self) -> aiomysql.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(
                self._settings,
                self._settings.mysql_database,
                init_command=f"SET SESSION sql_mode = '{STRICT_SQL_MODE}'",
                cursorclass=WarningCountingCursor,
            )
        return self._conn

    async def _kill(self) -> None:
        """End the writer's connection on the server, from another one: its statement stops
        and its transaction rolls back now, releasing its locks before the retry needs them.

        KILL CONNECTION rather than KILL QUERY: KILL QUERY stops the statement but leaves the
        transaction open, holding its locks, until the server notices the closed socket (which
        a blackholed network delays by minutes). A failure is only logged: the database may be
        unreachable, which is why the write timed out in the first place.
        """
        thread_id = getattr(self._conn, "server_thread_id", None)
        if not thread_id:
            return
        within = min(self._settings.db_timeout, KILL_TIMEOUT)
        try:
            async with asyncio.timeout(within):
                killer = await connect(self._settings, None, within=within)
                try:
                    async with killer.cursor() as cur:
                        await cur.execute("KILL CONNECTION %s", (thread_id[0],))
                finally:
                    killer.close()
            log.warning("timed-out batch write killed on the server", connection=thread_id[0])
        except DATABASE_ERRORS as exc:
            if error_code(exc) == UNKNOWN_THREAD:
                return  # it ended by itself meanwhile
            log.warning(
                "could not kill the timed-out batch write; the server ends it once it notices",
                connection=thread_id[0],
                error=str(exc) or type(exc).__name__,
            )

    def _discard(self) -> None:
        """Drop the connection without a round trip: its state is unknown after a failure."""
        if self._patterns is not None:
            self._patterns.rolled_back()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _log_rows(
    logs: Sequence[StoredLog], batch_id: int, patterns: Sequence[Pattern] | None
) -> Iterable[tuple[object, ...]]:
    """Rows in key order, so concurrent replicas lock the unique index in one order;
    `patterns` (in the order of `logs`) gives each its pattern_id.

    The timestamp goes as ISO text ('2026-11-23 10:00:00.123456', which DATETIME(6) reads
    exactly): the driver escapes a string several times faster than a datetime, once per row.
    """
    ids = [pid for pid, _ in patterns] if patterns is not None else [None] * len(logs)
    for log, pid in sorted(zip(logs, ids, strict=True), key=lambda item: item[0].idempotency_key):
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
            pid,
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
            hashlib.sha256(item.data).hexdigest(),
            item.received_at,
        )
