"""Retention and compaction (`lms retention`): old rows go and old rollup rows merge, in short
transactions that never change a total and never wait long on `lms mon`.

Why chunked deletes and not daily partitions: docs/scaling.md, Retention (in short, InnoDB
cannot partition a table with a FULLTEXT index, and every unique key of a partitioned table
must hold the partition column, which would make the idempotency key unique per timestamp
instead of globally).

The rules, so that every rollup stays equal to COUNT(*) over the logs that remain:

- The unit of expiry is the whole UTC day. With RETENTION_DAYS=N the cutoff is midnight UTC N
  days before today: a log goes when its own `timestamp` is before it, and so do the rows of
  the rollups dated by the logs' own time (volume_rollup, commit_rollup, the pattern and the
  request rollups, the retired pattern_counts: their hours and days are whole hours of a
  whole day or whole UTC days, so each is either kept with all its logs or gone with them)
  and rejected messages received before it.
- service_severity counts by commit time, not by the logs' time, so it cannot expire by date
  without drifting from COUNT(*) (a backlog commits old logs today). Instead, the transaction
  that deletes a chunk of logs takes their counts off service_severity in the same commit,
  oldest rows of each (service, severity) first: the per-pair totals (`lms stats`,
  /v1/services, /v1/consistency) stay exact at every moment, and rows drained to 0 go.
- Compaction merges the rows of one key and one bucket (service_severity: UTC day of the
  commit; volume_rollup: its hour, which is already its key) into one row holding the sums.
  Each chunk is one transaction: read up to RETENTION_CHUNK rows of a bucket with a locking
  read, delete exactly those rows by key, insert their sums. A crash rolls the chunk back
  whole, so a total never doubles or vanishes; rows `lms mon` adds meanwhile (late logs of
  an old hour) are not among the ids read, so they are neither deleted nor summed, just
  merged by a later run.

Transactions run in READ COMMITTED: a locking read then locks the rows it returns and no gaps,
so `lms mon`'s inserts (new ids, new rows) never wait behind a chunk.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Literal, TypeVar

import aiomysql
import structlog

from lms.domain.severity import SEVERITY_ORDER
from lms.settings import Settings
from lms.store.connection import connect
from lms.store.errors import DATABASE_ERRORS, classify, is_retriable

log = structlog.get_logger(__name__)

Grain = Literal["hour", "day"]
T = TypeVar("T")
INT_UNSIGNED_MAX = 2**32 - 1
BIGINT_UNSIGNED_MAX = 2**64 - 1
EARLIEST = datetime(1000, 1, 1)
"""The earliest DATETIME of MySQL and MariaDB."""
ATTEMPTS = 5
"""Tries of one chunk that fails with an error a retry can fix (a deadlock with `lms mon`)."""


@dataclass(frozen=True, slots=True)
class Dated:
    """A table whose rows are read oldest first: `time` dates a row, `index` is the index
    that leads with it (named in FORCE INDEX: on a range that holds most of the table the
    optimizers would rather scan and sort it whole, once per chunk), `row_key` identifies a
    row."""

    table: str
    time: str
    index: str
    row_key: tuple[str, ...] = ("id",)

    def oldest(self, columns: Sequence[str], since: bool) -> str:
        """The locking read of a chunk: `columns` of the oldest rows dated before %s (and,
        with `since`, at or after %s first), at most %s of them."""
        cond = f"{_q(self.time)} < %s"
        if since:
            cond = f"{_q(self.time)} >= %s AND {cond}"
        return (
            f"SELECT {', '.join(map(_q, columns))} FROM {self.table}"
            f" FORCE INDEX ({self.index}) WHERE {cond}"
            f" ORDER BY {_q(self.time)} LIMIT %s FOR UPDATE"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollup(Dated):
    """An append-only rollup table whose readers SUM rows: how to compact and expire it.

    Compaction leaves one row per `keys` and `grain` bucket of `time`, dated at the bucket's
    start. `batch` names a column of the primary key that makes each batch's row its own: a
    merged row gets a fresh random value there, as a batch does. `by_log_time` says `time` is
    the logs' own time, so the rows expire with the logs; otherwise (commit time) they are
    drained as the logs go (service_severity only). `max_sum` is the largest value the sum
    columns hold (a larger sum is split over several rows).
    """

    grain: Grain
    keys: tuple[str, ...]
    sums: tuple[str, ...]
    batch: str | None = None
    by_log_time: bool = True
    max_sum: int = BIGINT_UNSIGNED_MAX


SERVICE_LOGS = Dated("service_logs", "timestamp", "ix_service_logs_timestamp")
ROLLUPS: tuple[Rollup, ...] = (
    Rollup(
        table="service_severity",
        time="created_at",
        index="ix_service_severity_created",
        grain="day",
        keys=("service_name", "severity"),
        sums=("count",),
        by_log_time=False,
        max_sum=INT_UNSIGNED_MAX,
    ),
    Rollup(
        table="volume_rollup",
        time="hour_start",
        index="ix_volume_rollup_hour",
        grain="hour",
        keys=("service_name",),
        sums=SEVERITY_ORDER,
    ),
)
"""Every rollup table. A new one is one more entry here."""

UPSERTED: tuple[Dated, ...] = (
    Dated(
        "request_rollup", "hour_start", "PRIMARY", ("hour_start", "service_name", "route", "method")
    ),
    Dated(
        "request_rollup_day",
        "day_start",
        "PRIMARY",
        ("day_start", "service_name", "route", "method"),
    ),
    Dated("request_users", "hour_start", "PRIMARY", ("hour_start", "service_name", "user_id")),
    Dated("request_users_day", "day_start", "PRIMARY", ("day_start", "service_name", "user_id")),
    Dated("request_users_all_day", "day_start", "PRIMARY", ("day_start", "user_id")),
    Dated(
        "commit_rollup",
        "hour_start",
        "ix_commit_rollup_hour",
        ("commit", "hour_start", "service_name"),
    ),
    Dated("pattern_rollup", "hour_start", "PRIMARY", ("hour_start", "pattern_id", "severity")),
    Dated("pattern_rollup_day", "day_start", "PRIMARY", ("day_start", "pattern_id", "severity")),
    Dated(
        "pattern_service_rollup",
        "hour_start",
        "ix_pattern_service_rollup_hour",
        ("service_name", "hour_start", "pattern_id", "severity"),
    ),
    Dated(
        "pattern_service_rollup_day",
        "day_start",
        "ix_pattern_service_rollup_day_day",
        ("service_name", "day_start", "pattern_id", "severity"),
    ),
)
"""The rollups dated by the logs' own time that hold one row per key already (the writer adds
to it: sql/011, sql/013, sql/014, sql/015), so they need no compaction, only expiry. A day
table's rows are whole UTC days, expired on the same day boundary as the logs."""

RETIRED: tuple[Dated, ...] = (
    Dated(
        "pattern_counts",
        "bucket_start",
        "PRIMARY",
        ("bucket_start", "pattern_id", "service_name", "severity", "batch_id"),
    ),
)
"""Tables no longer written (pattern_counts: sql/013 replaced it) whose rows expire as they
age, so they empty by themselves; nothing compacts them."""

EXPIRING: tuple[Dated, ...] = (
    Dated("rejected_messages", "received_at", "ix_rejected_messages_received"),
    *(r for r in ROLLUPS if r.by_log_time),
    *UPSERTED,
    *RETIRED,
)
"""The tables besides service_logs whose old rows simply go."""


def _q(name: str) -> str:
    return f"`{name}`"


def bucket_of(moment: datetime, grain: Grain) -> datetime:
    """The start of the UTC hour or day `moment` (naive UTC) is in."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour.replace(hour=0) if grain == "day" else hour


def day_cutoff(days: int, now: datetime | None = None) -> datetime:
    """Midnight UTC `days` days before today's: rows dated before it are older than `days`."""
    today = bucket_of((now or datetime.now(UTC)).replace(tzinfo=None), "day")
    return today - timedelta(days=days)


@dataclass(slots=True)
class Report:
    """What one run changed: rows deleted per table, rows merged away per rollup."""

    deleted: Counter[str] = field(default_factory=Counter)
    merged: Counter[str] = field(default_factory=Counter)
    chunks: int = 0


Hook = Callable[[str], Awaitable[None]]
"""Called inside each chunk's transaction after its deletes, before its commit: lets a test
stop a run there, as a crash would."""


class Retention:
    """Compaction and expiry on one connection of its own (one task at a time)."""

    def __init__(self, settings: Settings, hook: Hook | None = None) -> None:
        self._settings = settings
        self._chunk = settings.retention_chunk
        self._hook = hook
        self._conn: aiomysql.Connection | None = None
        self.report = Report()
        """What the committed transactions changed."""
        self._pending = Report()
        """What the transaction under way changes, added to `report` once it commits."""

    async def __aenter__(self) -> Retention:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    async def run(self, now: datetime | None = None) -> Report:
        """Compact, then expire (when RETENTION_DAYS is set): one pass, as a daily job does."""
        await self.compact(day_cutoff(self._settings.compact_after_days, now))
        if self._settings.retention_days is not None:
            await self.expire(day_cutoff(self._settings.retention_days, now))
        return self.report

    # --- compaction ---

    async def compact(self, horizon: datetime) -> None:
        """Merge the rollup rows dated before `horizon` into one per key and bucket."""
        for rollup in ROLLUPS:
            since: datetime | None = EARLIEST
            while since is not None:
                since = await self._transaction(
                    rollup.table, partial(self._merge, rollup, since, horizon)
                )
                self.report.chunks += 1

    async def _merge(
        self, rollup: Rollup, since: datetime, horizon: datetime, cur: aiomysql.Cursor
    ) -> datetime | None:
        """One chunk: the oldest RETENTION_CHUNK rows dated in [since, horizon), in date order
        (along the index that leads with the date), merged by key and bucket; where the next
        chunk starts, None when none is left.

        A full chunk's last bucket may go on beyond it: that bucket is left to the next chunk
        (which starts with it), unless it is the chunk's only bucket, which is then merged in
        parts (the next chunk reads it again, merged rows included)."""
        key_cols = list(dict.fromkeys((*rollup.row_key, *rollup.keys)))
        cols = [*key_cols, *rollup.sums, rollup.time]
        await cur.execute(rollup.oldest(cols, since=True), (since, horizon, self._chunk))
        rows = await cur.fetchall()
        if not rows:
            return None
        grain, at = rollup.grain, cols.index(rollup.time)
        buckets = sorted({bucket_of(row[at], grain) for row in rows})
        following: datetime | None = None
        if len(rows) == self._chunk:
            following = buckets[-1]
            if len(buckets) > 1:
                rows = [row for row in rows if bucket_of(row[at], grain) < following]
        groups: dict[tuple[object, ...], list[tuple[object, ...]]] = {}
        key_at = [cols.index(k) for k in rollup.keys]
        for row in rows:
            group = (bucket_of(row[at], grain), *(row[i] for i in key_at))
            groups.setdefault(group, []).append(row)
        merging = {group: members for group, members in groups.items() if len(members) > 1}
        if not merging:
            if len(buckets) == 1 and following is not None:
                log.warning(
                    "compaction: a chunk of one bucket holds only distinct keys;"
                    " raise RETENTION_CHUNK",
                    table=rollup.table,
                    bucket=following.isoformat(),
                )
                return following + _span(grain)
            return following
        row_key_at = [cols.index(c) for c in rollup.row_key]
        doomed = [tuple(row[i] for i in row_key_at) for ms in merging.values() for row in ms]
        await _delete_keys(cur, rollup.table, rollup.row_key, doomed)
        sum_at = [cols.index(c) for c in rollup.sums]
        merged: list[tuple[object, ...]] = []
        for group, members in merging.items():
            totals = [sum(int(str(row[i])) for row in members) for i in sum_at]
            for part in _split(totals, rollup.max_sum):
                extra = (secrets.randbits(63),) if rollup.batch else ()
                merged.append((*group, *part, *extra))
        insert_cols = [rollup.time, *rollup.keys, *rollup.sums]
        if rollup.batch:
            insert_cols.append(rollup.batch)
        await cur.executemany(
            f"INSERT INTO {rollup.table} ({', '.join(map(_q, insert_cols))})"
            f" VALUES ({', '.join(['%s'] * len(insert_cols))})",
            merged,
        )
        self._pending.merged[rollup.table] += len(doomed) - len(merged)
        return following

    # --- expiry ---

    async def expire(self, cutoff: datetime) -> None:
        """Delete the logs dated before `cutoff` (draining their service_severity counts in
        the same transactions), then the rollup rows and rejections dated before it."""
        await self._repeat("service_logs", partial(self._expire_logs, cutoff))
        for dated in EXPIRING:
            await self._repeat(dated.table, partial(self._expire_rows, dated, cutoff))

    async def _expire_logs(self, cutoff: datetime, cur: aiomysql.Cursor) -> bool:
        columns = ("id", "service_name", "severity")
        await cur.execute(SERVICE_LOGS.oldest(columns, since=False), (cutoff, self._chunk))
        rows = await cur.fetchall()
        if not rows:
            return False
        await _delete_keys(cur, "service_logs", ("id",), [(row[0],) for row in rows])
        for (service, severity), count in sorted(Counter((r[1], r[2]) for r in rows).items()):
            await self._drain(cur, service, severity, count)
        self._pending.deleted["service_logs"] += len(rows)
        return len(rows) == self._chunk

    async def _drain(self, cur: aiomysql.Cursor, service: str, severity: str, count: int) -> None:
        """Take `count` off the service_severity rows of (service, severity), oldest first."""
        left = count
        while left > 0:
            await cur.execute(
                "SELECT id, `count` FROM service_severity WHERE service_name = %s"
                " AND severity = %s ORDER BY created_at, id LIMIT 100 FOR UPDATE",
                (service, severity),
            )
            found = await cur.fetchall()
            if not found:
                log.warning(
                    "retention: service_severity held fewer logs than service_logs",
                    service=service,
                    severity=severity,
                    missing=left,
                )
                return
            emptied: list[tuple[object, ...]] = []
            for row_id, stored in found:
                stored = int(stored)
                if stored <= left:
                    emptied.append((row_id,))
                    left -= stored
                else:
                    await cur.execute(
                        "UPDATE service_severity SET `count` = %s WHERE id = %s",
                        (stored - left, row_id),
                    )
                    left = 0
                    break
            await _delete_keys(cur, "service_severity", ("id",), emptied)
            self._pending.deleted["service_severity"] += len(emptied)

    async def _expire_rows(self, dated: Dated, cutoff: datetime, cur: aiomysql.Cursor) -> bool:
        await cur.execute(dated.oldest(dated.row_key, since=False), (cutoff, self._chunk))
        rows = await cur.fetchall()
        await _delete_keys(cur, dated.table, dated.row_key, rows)
        self._pending.deleted[dated.table] += len(rows)
        return len(rows) == self._chunk

    # --- transactions ---

    async def _repeat(
        self, table: str, chunk: Callable[[aiomysql.Cursor], Awaitable[bool]]
    ) -> None:
        """Run `chunk` in transactions of its own until it says there is nothing more."""
        while await self._transaction(table, chunk):
            self.report.chunks += 1
        self.report.chunks += 1

    async def _transaction(self, table: str, work: Callable[[aiomysql.Cursor], Awaitable[T]]) -> T:
        """`work` in one transaction, committed; retried on a deadlock or a lost connection."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with asyncio.timeout(self._settings.db_timeout):
                    conn = await self._connection()
                    self._pending = Report()
                    await conn.begin()
                    async with conn.cursor() as cur:
                        outcome = await work(cur)
                        if self._hook is not None:
                            await self._hook(table)
                    await conn.commit()
                    self.report.deleted.update(self._pending.deleted)
                    self.report.merged.update(self._pending.merged)
                    return outcome
            except (*DATABASE_ERRORS, asyncio.CancelledError) as exc:
                await self.close()  # unknown state: the server rolls the chunk back
                if isinstance(exc, asyncio.CancelledError):
                    raise
                error = classify(exc, f"retention of {table}")
                if not is_retriable(exc) or attempt == ATTEMPTS:
                    raise error from exc
                log.warning("retention chunk failed; retrying", table=table, error=str(error))
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            except BaseException:
                await self.close()
                raise
        raise AssertionError("unreachable")

    async def _connection(self) -> aiomysql.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(
                self._settings,
                self._settings.mysql_database,
                init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            )
        return self._conn


def _span(grain: Grain) -> timedelta:
    return timedelta(days=1) if grain == "day" else timedelta(hours=1)


def _split(totals: list[int], cap: int) -> list[list[int]]:
    """`totals` as rows whose every value fits in `cap` (one row unless a sum overflows)."""
    parts: list[list[int]] = []
    left = list(totals)
    while True:
        part = [min(value, cap) for value in left]
        parts.append(part)
        left = [value - taken for value, taken in zip(left, part, strict=True)]
        if not any(left):
            return parts


async def _delete_keys(
    cur: aiomysql.Cursor, table: str, key: tuple[str, ...], rows: Sequence[tuple[object, ...]]
) -> None:
    """Delete exactly the rows whose `key` columns hold `rows`."""
    if not rows:
        return
    if len(key) == 1:
        marks = ", ".join(["%s"] * len(rows))
        await cur.execute(
            f"DELETE FROM {table} WHERE {_q(key[0])} IN ({marks})", [r[0] for r in rows]
        )
        return
    one = f"({', '.join(['%s'] * len(key))})"
    await cur.execute(
        f"DELETE FROM {table} WHERE ({', '.join(map(_q, key))})"
        f" IN ({', '.join([one] * len(rows))})",
        [value for row in rows for value in row],
    )
