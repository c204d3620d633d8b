"""The request rollups (sql/011, sql/014): what one batch transaction adds to request_rollup,
request_rollup_day, request_users, request_users_day and request_users_all_day.

Counted from the rows the transaction really inserted, the rule that keeps service_severity
and volume_rollup exact: when every row of the batch is new the batch itself has them;
otherwise (a redelivery, another replica's copy) the idempotency keys it inserted are read
back by batch_id, and only those logs count. Which logs are requests, and their route, status
and latency bin, is lms.domain.requests' rule, in Python (the same code the readers apply to
the partial hours they count from service_logs).

One row per key and hour (or day): the batch's sums are added to it by INSERT ... ON
DUPLICATE KEY UPDATE, so a read sums one row per key however many batches wrote it (an
append-only row per batch made a month's read sum hundreds of thousands of rows). VALUES(col)
rather than MySQL's `AS new` alias: MariaDB knows only the former, MySQL 8 accepts both (with
a deprecation note). The rows go in key order, table after table, so two replicas upserting
the same keys lock them in one order; a deadlock that still happens (gap locks of new keys)
is retriable (lms.store.errors) and the whole batch is retried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

import aiomysql

from lms.domain.record import LogRecord
from lms.domain.requests import BINS, Request, request_of

BIN_COLUMNS = tuple(f"b{i:02d}" for i in range(BINS))
_INSERTED = "SELECT idempotency_key FROM service_logs WHERE batch_id = %s"
SUM_COLUMNS = ("`count`", "count_4xx", "count_5xx", "sum_ms", *BIN_COLUMNS)


def _upsert_routes(table: str, time: str) -> str:
    added = ", ".join(f"{c} = {c} + VALUES({c})" for c in SUM_COLUMNS)
    return (
        f"INSERT INTO {table} ({time}, service_name, route, method, {', '.join(SUM_COLUMNS)})"
        f" VALUES ({', '.join(['%s'] * (4 + len(SUM_COLUMNS)))}) ON DUPLICATE KEY UPDATE {added}"
    )


def _upsert_users(table: str, time: str, service: bool = True) -> str:
    keys = f"{time}, service_name, user_id" if service else f"{time}, user_id"
    marks = ", ".join(["%s"] * (keys.count(",") + 3))
    return (
        f"INSERT INTO {table} ({keys}, `count`, last_seen)"
        f" VALUES ({marks}) ON DUPLICATE KEY UPDATE"
        " `count` = `count` + VALUES(`count`), last_seen = GREATEST(last_seen, VALUES(last_seen))"
    )


UPSERT_ROUTES = _upsert_routes("request_rollup", "hour_start")
UPSERT_ROUTE_DAYS = _upsert_routes("request_rollup_day", "day_start")
UPSERT_USERS = _upsert_users("request_users", "hour_start")
UPSERT_USER_DAYS = _upsert_users("request_users_day", "day_start")
UPSERT_USER_ALL_DAYS = _upsert_users("request_users_all_day", "day_start", service=False)

RouteKey = tuple[str, str, str, str]
"""(hour as DATETIME text, or day as DATE text, service, route, method)."""
UserKey = tuple[str, str, str]
"""(hour as DATETIME text, or day as DATE text, service, user id)."""
Users = dict[UserKey, tuple[int, datetime]]
K = TypeVar("K", bound=tuple[str, ...])


class _Stored(Protocol):
    @property
    def record(self) -> LogRecord: ...

    @property
    def idempotency_key(self) -> str: ...


def hour_text(moment: datetime) -> str:
    """The hour of `moment` as DATETIME text (the driver escapes a string faster)."""
    return f"{moment.isoformat(' ')[:13]}:00:00"


@dataclass(slots=True)
class RouteFigures:
    """The sums of one key: requests, 4xx, 5xx, summed milliseconds, the histogram."""

    count: int = 0
    count_4xx: int = 0
    count_5xx: int = 0
    sum_ms: float = 0.0
    bins: list[int] = field(default_factory=lambda: [0] * BINS)

    def add(self, request: Request) -> None:
        self.count += 1
        self.count_4xx += 400 <= request.status <= 499
        self.count_5xx += request.status >= 500
        self.sum_ms += request.duration_ms
        self.bins[request.bin] += 1

    def merge(self, other: RouteFigures) -> None:
        self.count += other.count
        self.count_4xx += other.count_4xx
        self.count_5xx += other.count_5xx
        self.sum_ms += other.sum_ms
        self.bins = [a + b for a, b in zip(self.bins, other.bins, strict=True)]


@dataclass(slots=True)
class RequestRollup:
    """The rollup rows of a set of logs, all of them stored: built log by log."""

    routes: dict[RouteKey, RouteFigures] = field(default_factory=dict)
    users: Users = field(default_factory=dict)

    def add(self, record: LogRecord, request: Request) -> None:
        hour = hour_text(record.timestamp)
        key = (hour, record.service_name, request.route, request.method)
        figures = self.routes.get(key)
        if figures is None:
            figures = self.routes[key] = RouteFigures()
        figures.add(request)
        if request.user_id is not None:
            _add_user(self.users, (hour, record.service_name, request.user_id), 1, record.timestamp)

    def days(self) -> RequestRollup:
        """The same sums per UTC day (the day tier): the hours' keys with the hour cut."""
        days = RequestRollup()
        for (hour, service, route, method), figures in self.routes.items():
            key = (hour[:10], service, route, method)
            found = days.routes.get(key)
            if found is None:
                found = days.routes[key] = RouteFigures()
            found.merge(figures)
        for (hour, service, user), (count, last) in self.users.items():
            _add_user(days.users, (hour[:10], service, user), count, last)
        return days

    def all_services(self) -> dict[tuple[str, str], tuple[int, datetime]]:
        """The users' sums with the service cut (request_users_all_day: one row per (hour or
        day, user), whatever services they called)."""
        users: dict[tuple[str, str], tuple[int, datetime]] = {}
        for (time, _service, user), (count, last) in self.users.items():
            _add_user(users, (time, user), count, last)
        return users

    def route_rows(self) -> list[tuple[object, ...]]:
        """Rows of request_rollup, in key order (replicas lock the primary key in one order)."""
        return [
            (*key, f.count, f.count_4xx, f.count_5xx, f.sum_ms, *f.bins)
            for key, f in sorted(self.routes.items())
        ]

    def user_rows(self) -> list[tuple[object, ...]]:
        return _user_rows(self.users)

    def statements(self) -> list[tuple[str, list[tuple[object, ...]]]]:
        """The upserts that add these sums to the five tables, each with its rows (maybe
        none): hours, then days, routes before users (one lock order for every writer)."""
        days = self.days()
        return [
            (UPSERT_ROUTES, self.route_rows()),
            (UPSERT_ROUTE_DAYS, days.route_rows()),
            (UPSERT_USERS, self.user_rows()),
            (UPSERT_USER_DAYS, days.user_rows()),
            (UPSERT_USER_ALL_DAYS, _user_rows(days.all_services())),
        ]

    async def upsert(self, cur: aiomysql.Cursor) -> None:
        for sql, rows in self.statements():
            if rows:
                await cur.executemany(sql, rows)


def _user_rows(users: Mapping[K, tuple[int, datetime]]) -> list[tuple[object, ...]]:
    """Rows of a users table, in key order (replicas lock the primary key in one order)."""
    return [(*key, count, last.isoformat(" ")) for key, (count, last) in sorted(users.items())]


def _add_user(users: dict[K, tuple[int, datetime]], key: K, count: int, last: datetime) -> None:
    before, seen = users.get(key, (0, last))
    users[key] = (before + count, max(seen, last))


def requests_in(logs: Iterable[_Stored]) -> list[tuple[_Stored, Request]]:
    """The logs that are requests, with what the rollup keeps of them."""
    found = []
    for log in logs:
        request = request_of(log.record.metadata)
        if request is not None:
            found.append((log, request))
    return found


async def add_request_rollup(
    cur: aiomysql.Cursor, logs: Sequence[_Stored], batch_id: int, every_row_new: bool
) -> None:
    """Add the rollup rows of the requests this transaction inserted of `logs`."""
    found = requests_in(logs)
    if not found:
        return
    if not every_row_new:
        await cur.execute(_INSERTED, (batch_id,))
        inserted = {str(key) for (key,) in await cur.fetchall()}
        # A key twice in one batch is stored once, from its first log (the rows go in key
        # order, stably sorted): the later ones were skipped as duplicates.
        kept = []
        for log, request in found:
            if log.idempotency_key in inserted:
                inserted.discard(log.idempotency_key)
                kept.append((log, request))
        found = kept
    rollup = RequestRollup()
    for log, request in found:
        rollup.add(log.record, request)
    await rollup.upsert(cur)
