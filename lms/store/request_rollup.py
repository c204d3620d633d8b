"""The request rollups (sql/011): what one batch transaction adds to request_rollup and
request_users.

Counted from the rows the transaction really inserted, the rule that keeps service_severity
and volume_rollup exact: when every row of the batch is new the batch itself has them;
otherwise (a redelivery, another replica's copy) the idempotency keys it inserted are read
back by batch_id, and only those logs count. Which logs are requests, and their route, status
and latency bin, is lms.domain.requests' rule, in Python (the same code the readers apply to
the partial hours they count from service_logs). Rows are only ever added; readers SUM them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import aiomysql

from lms.domain.record import LogRecord
from lms.domain.requests import BINS, Request, request_of

BIN_COLUMNS = tuple(f"b{i:02d}" for i in range(BINS))
_INSERTED = "SELECT idempotency_key FROM service_logs WHERE batch_id = %s"
INSERT_ROUTES = (
    "INSERT INTO request_rollup (hour_start, service_name, route, method, batch_id, `count`,"
    f" count_4xx, count_5xx, sum_ms, {', '.join(BIN_COLUMNS)})"
    f" VALUES ({', '.join(['%s'] * (9 + BINS))})"
)
INSERT_USERS = (
    "INSERT INTO request_users (hour_start, service_name, user_id, batch_id, `count`,"
    " last_seen) VALUES (%s, %s, %s, %s, %s, %s)"
)

RouteKey = tuple[str, str, str, str]
"""(hour as DATETIME text, service, route, method)."""
UserKey = tuple[str, str, str]
"""(hour as DATETIME text, service, user id)."""


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


@dataclass(slots=True)
class RequestRollup:
    """The rollup rows of a set of logs, all of them stored: built log by log."""

    routes: dict[RouteKey, RouteFigures] = field(default_factory=dict)
    users: dict[UserKey, tuple[int, datetime]] = field(default_factory=dict)

    def add(self, record: LogRecord, request: Request) -> None:
        hour = hour_text(record.timestamp)
        key = (hour, record.service_name, request.route, request.method)
        figures = self.routes.get(key)
        if figures is None:
            figures = self.routes[key] = RouteFigures()
        figures.add(request)
        if request.user_id is not None:
            user = (hour, record.service_name, request.user_id)
            count, last = self.users.get(user, (0, record.timestamp))
            self.users[user] = (count + 1, max(last, record.timestamp))

    def route_rows(self, batch_id: int) -> list[tuple[object, ...]]:
        """Rows of request_rollup, in key order (replicas lock the primary key in one order)."""
        return [
            (*key, batch_id, f.count, f.count_4xx, f.count_5xx, f.sum_ms, *f.bins)
            for key, f in sorted(self.routes.items())
        ]

    def user_rows(self, batch_id: int) -> list[tuple[object, ...]]:
        return [
            (*key, batch_id, count, last.isoformat(" "))
            for key, (count, last) in sorted(self.users.items())
        ]

    async def insert(self, cur: aiomysql.Cursor, batch_id: int) -> None:
        if self.routes:
            await cur.executemany(INSERT_ROUTES, self.route_rows(batch_id))
        if self.users:
            await cur.executemany(INSERT_USERS, self.user_rows(batch_id))


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
    await rollup.insert(cur, batch_id)
