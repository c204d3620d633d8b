"""A user's requests in the order they were made: GET /v1/users/{user_id}/requests.

The request-logging middleware of lms_client logs each request with metadata.user_id,
metadata.instance (the server instance, host:pid) and metadata.seq (that instance's counter,
rising by request), and the request's start time as the log's timestamp. Migration 008 makes
them the columns user_id, request_instance and request_seq, and one index holds a user's logs
in the order read here: (timestamp, request_instance, request_seq, id), oldest first.

What that order is worth: across instances it is as good as their clocks (two requests of
one user served by two machines are ordered by the start times those machines stamped);
within one instance `seq` orders requests exactly, even in the same microsecond. The id
breaks the last ties (a log the middleware retried is stored once, so there are none in
practice).

A request log is one with both request_instance and request_seq: a seq means nothing without
the instance it counts in, and requiring both keeps NULL out of every keyed column, so the
keyset comparison stays a plain range over the index. A user's other logs are in
GET /v1/logs?user_id=.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lms.domain.record import MAX_CONTEXT
from lms.query.cursor import RequestCursor
from lms.query.errors import QueryError
from lms.query.filters import DEFAULT_LIMIT, MAX_LIMIT
from lms.query.sql import COLUMNS, IX_USER, Conditions

OLDEST_FIRST = "ORDER BY `timestamp`, request_instance, request_seq, id"


@dataclass(frozen=True, slots=True)
class RequestsQuery:
    """One page of a user's requests; `cursor` is where the previous page ended."""

    user_id: str
    limit: int = DEFAULT_LIMIT
    cursor: RequestCursor | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.user_id) <= MAX_CONTEXT:
            raise QueryError("user_id", f"must have 1..{MAX_CONTEXT} characters")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError("limit", f"must be 1..{MAX_LIMIT}, not {self.limit}")


def build_requests_sql(query: RequestsQuery) -> tuple[str, list[object]]:
    """The SELECT of one page (limit + 1 rows, to know whether another page follows): the
    user's entries of the request-order index, read forwards from the cursor, so no sort."""
    cond = Conditions(
        ["user_id = %s", "request_instance IS NOT NULL", "request_seq IS NOT NULL"],
        [query.user_id],
    )
    cond += after(query.cursor)
    sql = (
        f"SELECT {COLUMNS}, request_instance, request_seq FROM service_logs"
        f" FORCE INDEX ({IX_USER}){cond.where()} {OLDEST_FIRST} LIMIT %s"
    )
    return sql, [*cond.args, query.limit + 1]


def after(bound: RequestCursor | None) -> Conditions:
    """Rows strictly after `bound` in (timestamp, request_instance, request_seq, id) order.

    The row comparison expanded, as MariaDB only ranges over this form: the leading
    `timestamp >= t` bounds the range on the index, the rest is checked on its entries.
    """
    cond = Conditions()
    if bound is not None:
        t, instance, seq = bound.timestamp, bound.instance, bound.seq
        cond.add(
            "`timestamp` >= %s AND (`timestamp` > %s OR (request_instance >= %s AND"
            " (request_instance > %s OR (request_seq >= %s AND (request_seq > %s OR id > %s)))))",
            t, t, instance, instance, seq, seq, bound.id,
        )  # fmt: skip
    return cond


def cursor_after(row: Sequence[Any]) -> RequestCursor:
    """The cursor of a row of `build_requests_sql`: its columns after COLUMNS' eleven."""
    return RequestCursor(row[4], str(row[11]), int(row[12]), int(row[0]))
