"""All SQL of LMS: connecting, migrating and the one transaction that stores a batch.

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
from pathlib import Path

import aiomysql
import pymysql
import structlog

from lms.model import LogRecord, Rejection
from lms.settings import Settings

log = structlog.get_logger("lms.storage")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql"
MAX_REJECTED_DATA = 1 << 20
MAX_DETAIL = 1024

_INSERT_LOG = (
    "INSERT IGNORE INTO service_logs"
    " (message_id, batch_id, service_name, payload, severity, `timestamp`,"
    " resource_id, trace_id, span_id, `commit`, metadata)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
    " (message_id, reason, detail, data, data_size, received_at)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


class QuietCursor(aiomysql.Cursor):
    """A cursor that skips SHOW WARNINGS: INSERT IGNORE warns once per duplicate by design,
    and fetching those warnings would cost a round trip per statement on the hot path."""

    async def _show_warnings(self, conn: aiomysql.Connection) -> None:
        return None


class StorageError(Exception):
    """The database failed or timed out; the batch was rolled back and may be retried."""


@dataclass(frozen=True, slots=True)
class StoredLog:
    message_id: str
    record: LogRecord


@dataclass(frozen=True, slots=True)
class StoredRejection:
    message_id: str
    rejection: Rejection
    data: bytes
    received_at: datetime


@dataclass(slots=True)
class BatchResult:
    """What one committed batch changed: only rows this transaction really inserted count."""

    new_by_key: dict[tuple[str, str], int] = field(default_factory=dict)
    duplicates: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def new(self) -> int:
        return sum(self.new_by_key.values())

    @property
    def rejected_new(self) -> int:
        return sum(self.rejected_by_reason.values())


def connect_kwargs(settings: Settings, database: str | None) -> dict[str, object]:
    return {
        "host": settings.mysql_host,
        "port": settings.mysql_port,
        "user": settings.mysql_user,
        "password": settings.mysql_password,
        "db": database,
        "charset": "utf8mb4",
        "autocommit": False,
        "connect_timeout": min(settings.db_timeout, 10.0),
        "cursorclass": QuietCursor,
    }


async def _connect(settings: Settings, database: str | None) -> aiomysql.Connection:
    """Connect within the connect timeout, handshake included.

    aiomysql's connect_timeout bounds only the TCP connect: a server that accepts and never
    answers (a hung server, a network dropping packets) would otherwise hang start-up
    forever, silently, instead of being retried with "database not reachable" logs.
    """
    kwargs = connect_kwargs(settings, database)
    timeout = float(kwargs["connect_timeout"])  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(timeout):
            return await aiomysql.connect(**kwargs)
    except TimeoutError:
        raise TimeoutError(
            f"no answer from MySQL at {settings.mysql_host}:{settings.mysql_port}"
            f" within {timeout:g} s"
        ) from None


class Storage:
    """The writer side of the database, used by one task at a time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: aiomysql.Connection | None = None

    async def ensure_database(self) -> None:
        """Create the database if missing; the name is validated by Settings, hence quoted."""
        conn = await _connect(self._settings, None)
        try:
            async with conn.cursor() as cur:
                await cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{self._settings.mysql_database}`"
                    " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
        finally:
            conn.close()

    async def migrate(self) -> list[str]:
        """Apply the numbered files of `sql/` not applied yet; returns their names.

        A named lock serialises replicas starting together, so each file runs exactly once.
        """
        await self.ensure_database()
        conn = await self._connection()
        applied: list[str] = []
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT GET_LOCK('lms_migrate', 60)")
                (locked,) = await cur.fetchone()
                if locked != 1:
                    raise StorageError("another process held the migration lock for 60 s")
                try:
                    await cur.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version VARCHAR(255) NOT NULL PRIMARY KEY,"
                        " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
                    )
                    await cur.execute("SELECT version FROM schema_migrations")
                    done = {row[0] for row in await cur.fetchall()}
                    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                        if path.name in done:
                            continue
                        for statement in _statements(path.read_text(encoding="utf-8")):
                            await _execute_ddl(cur, statement, path.name)
                        await cur.execute(
                            "INSERT INTO schema_migrations (version) VALUES (%s)", (path.name,)
                        )
                        await conn.commit()
                        applied.append(path.name)
                finally:
                    await cur.execute("SELECT RELEASE_LOCK('lms_migrate')")
        except BaseException:
            self._discard()
            raise
        return applied

    async def write_batch(
        self, logs: Sequence[StoredLog], rejections: Sequence[StoredRejection]
    ) -> BatchResult:
        """Store one batch in one transaction, or raise StorageError having stored nothing."""
        try:
            async with asyncio.timeout(self._settings.db_timeout):
                return await self._write_batch(logs, rejections)
        except (pymysql.err.MySQLError, OSError, TimeoutError, RuntimeError) as exc:
            self._discard()
            kind = "timed out" if isinstance(exc, TimeoutError) else "failed"
            raise StorageError(f"batch write {kind}: {exc!r}") from exc
        except BaseException:
            self._discard()
            raise

    async def ping(self) -> None:
        """Check the database answers, on a short-lived connection of its own."""
        async with asyncio.timeout(min(self._settings.db_timeout, 5.0)):
            conn = await aiomysql.connect(
                **connect_kwargs(self._settings, self._settings.mysql_database)
            )
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
                result.duplicates = len(logs) - inserted
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
            self._conn = await _connect(self._settings, self._settings.mysql_database)
        return self._conn

    def _discard(self) -> None:
        """Drop the connection without a round trip: its state is unknown after a failure."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _log_rows(logs: Sequence[StoredLog], batch_id: int) -> Iterable[tuple[object, ...]]:
    """Rows in message-id order, so concurrent replicas lock the unique index in one order.

    The timestamp goes as ISO text ('2026-11-23 10:00:00.123456', which DATETIME(6) reads
    exactly): the driver escapes a string several times faster than a datetime, once per row.
    """
    for log in sorted(logs, key=lambda item: item.message_id):
        r = log.record
        yield (
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
    for item in sorted(rejections, key=lambda item: item.message_id):
        yield (
            item.message_id,
            item.rejection.reason.value,
            item.rejection.detail[:MAX_DETAIL],
            item.data[:MAX_REJECTED_DATA],
            len(item.data),
            item.received_at,
        )


# DDL commits statement by statement, so a migration interrupted half-way (lms mon killed
# during start-up) is re-run from its first statement next time. A statement whose effect is
# already there then fails with one of these: table exists, duplicate column, duplicate key
# name, can't DROP a missing column or key. Skipping it lets the rest of the file run;
# otherwise every later start-up would fail on it forever. (Each ALTER is atomic.)
_ALREADY_APPLIED = frozenset({1050, 1060, 1061, 1091})


async def _execute_ddl(cur: aiomysql.Cursor, statement: str, migration: str) -> None:
    try:
        await cur.execute(statement)
    except pymysql.err.MySQLError as exc:
        if not exc.args or exc.args[0] not in _ALREADY_APPLIED:
            raise
        log.warning(
            "migration statement already applied (an earlier run was interrupted); skipped",
            migration=migration,
            error=str(exc),
        )


def _statements(script: str) -> Iterable[str]:
    """Split a migration into statements; migrations keep to one `;` per statement end."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
