"""The read side of the database: every query of `lms api`, `lms logs` and `lms stats`.

`lms.store` owns the write SQL; this package owns all read SQL, and every value in it is a
bound parameter (the only text spliced into statements comes from fixed tables below).

Logs are returned newest first, ordered by (`timestamp` DESC, id DESC), and paged with a keyset
cursor: the (timestamp, id) of the last row of a page, so the next page starts strictly after
it. Pages never repeat or skip rows, even while new logs arrive. The time range is half-open:
`since` is inclusive and `until` exclusive, so consecutive ranges never overlap.

Which index answers a query (see lms/store/sql/002_log_context.sql):
- a selective filter (trace, span, resource, commit, parent resource) drives the query
  through its own index, the other filters are checked on the rows it finds (the service
  already on the entries of the resource, commit and parent-resource indexes, which hold it
  since migration 003);
- otherwise the query is split per severity into a UNION ALL of branches, each reading the
  (service_name, severity, timestamp) or (severity, timestamp) index backwards from the cursor
  and stopping after `limit + 1` rows; the branches are merged and cut to the page. So a page
  reads at most 5 x (limit + 1) index entries whatever the table size;
- a full-text search first probes the newest entries of those same branches (`LogReader`'s
  probe, `build_probe_sql`). Their indexes hold short payloads (migration 004), so the words are
  tested on index entries and only matching rows are read. Only when the probe cannot fill
  the page does the FULLTEXT index answer (trace and span ids: their few rows are all read).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import aiomysql
import pymysql
import structlog

from lms.domain.severity import SEVERITY_ORDER
from lms.query.buckets import BUCKET_FORMATS, Bucket, bucket_range
from lms.query.cursor import Bound, Cursor
from lms.query.errors import DatabaseUnavailable, TooManyBuckets
from lms.query.filters import LogQuery
from lms.query.patterns import (
    TREND_TEXT_MAX,
    PatternCount,
    PatternsQuery,
    add_trend,
    any_pattern,
    edge_start,
    span_sql,
    spans,
    top,
    trend_spans,
    trend_starts,
)
from lms.query.probe import PROBE_DEPTH, build_probe_sql, first_probe_depth, next_probe_depth
from lms.query.results import (
    Consistency,
    ConsistencyRow,
    LogEntry,
    LogPage,
    ServiceCounts,
    SeverityBucket,
    entry_from_row,
)
from lms.query.search import TextSearch, parse_search
from lms.query.sql import Conditions, build_log_sql, build_logs_sql
from lms.query.user_requests import RequestsQuery, build_requests_sql, cursor_after
from lms.settings import MIN_QUERY_TIMEOUT, Settings
from lms.store.connection import connect, connect_kwargs, connect_timeout
from lms.store.errors import (
    DATABASE_ERRORS,
    SCHEMA_MISSING_CODES,
    STATEMENT_TIMEOUT_CODES,
    StorageError,
    classify,
    error_code,
    is_connection_lost,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
GROUP_CONCAT_MAX_LEN = 16 * 2**20
"""Bytes of one GROUP_CONCAT (lms.query.fold's folded series): MariaDB's default
max_allowed_packet, which bounds a row anyway."""
Rows = list[tuple[Any, ...]]
Fetch = Callable[[str, Sequence[object]], Awaitable[Rows]]
"""Runs one SELECT and returns its rows."""


class LogReader:
    """Read-only access through a small aiomysql pool, opened lazily (the database may be
    down when the API starts) and usable with a read-only MySQL user (GRANT SELECT).

    Each session is made read-only and gets a server-side statement time limit, so a runaway
    query cannot pile up on the server.
    """

    def __init__(self, settings: Settings, pool_size: int = 10, timeout: float = 10.0) -> None:
        if timeout < MIN_QUERY_TIMEOUT:
            raise ValueError(f"timeout must be at least {MIN_QUERY_TIMEOUT}s: {timeout!r}")
        self._settings = settings
        self._pool_size = pool_size
        self._timeout = timeout
        self._pool: aiomysql.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self.min_token = 3
        self.max_token = 84
        self.probe_depth: int | None = PROBE_DEPTH
        """None: no probe, every full-text search goes through the FULLTEXT index (tests
        compare)."""
        self.strategies: Counter[str] = Counter()
        """How full-text searches were answered: probe, probe-complete, fulltext, scan."""
        self._wakeups: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> LogReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    # --- queries ---

    async def logs(self, query: LogQuery) -> LogPage:
        rows = await self._log_rows(query)
        entries = [entry_from_row(row) for row in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            last = entries[-1]
            next_cursor = Cursor(last.timestamp, last.id).encode()
        return LogPage(entries, next_cursor)

    async def log(self, log_id: int) -> LogEntry | None:
        """The log whose primary key is `log_id`, or None."""
        rows = await self._fetch(*build_log_sql(log_id))
        return entry_from_row(rows[0]) if rows else None

    async def _log_rows(self, query: LogQuery) -> list[tuple[Any, ...]]:
        if query.q is None:
            return await self._fetch(*build_logs_sql(query))
        search = await self.text_search(query.q)
        if search.patterns:
            by_id = (query.trace_id, query.span_id, query.user_id)
            if any(value is not None for value in by_id):
                # A trace has few rows, a user's are found by their own index: check them
                # all, no FULLTEXT lookup needed.
                self.strategies["scan"] += 1
                return await self._fetch(*build_logs_sql(query, search, use_index=False))
            rows = await self._probe(query, search, self.probe_depth) if self.probe_depth else None
            if rows is not None:
                return rows
        self.strategies["fulltext"] += 1
        return await self._fetch(*build_logs_sql(query, search))

    async def _probe(
        self, query: LogQuery, search: TextSearch, full: int
    ) -> list[tuple[Any, ...]] | None:
        """The page from the newest candidates alone, or None if they may not hold it.

        A common word fills a page from recent rows at once; the FULLTEXT index would first
        collect every match in the table, however many, to sort them by time. A shallow probe
        first, then one as deep as its matches suggest, then the full depth; each reads only
        the entries below the previous one's floor.
        """
        rows: list[tuple[Any, ...]] = []
        ceiling: Bound | None = None
        read = 0  # the depth the probes so far reached
        densest: int | None = None
        depth = first_probe_depth(full, query.limit)
        while True:
            plan = build_probe_sql(query, search, depth - read, ceiling, densest)
            bounds = await self._fetch(plan.bounds_sql, plan.bounds_args)
            if not bounds and densest is not None:  # it ended: bound by the others
                plan = build_probe_sql(query, search, depth - read, ceiling)
                bounds = await self._fetch(plan.bounds_sql, plan.bounds_args)
            floor = None
            if bounds:
                moment, row_id, densest = max(bounds, key=lambda b: (b[0], b[1]))
                floor = Bound(moment, int(row_id))
            rows += await self._fetch(*plan.probe(floor, query.limit + 1 - len(rows)))
            if floor is None:
                self.strategies["probe-complete"] += 1
                return rows  # every stream was read to its end: the answer is complete
            if len(rows) > query.limit:
                self.strategies["probe"] += 1
                return rows
            if depth >= full:
                return None
            ceiling, read = floor, depth
            depth = next_probe_depth(depth, len(rows), query.limit, full)

    async def services(self, max_buckets: int | None = None) -> list[ServiceCounts]:
        """Per service, the total count per severity (every severity present, 0 if none).

        With `max_buckets`, TooManyBuckets when more (service, severity) pairs have logs.
        """
        rows = await self._fetch(
            *_capped(
                "SELECT service_name, severity, SUM(`count`) FROM service_severity"
                " GROUP BY service_name, severity ORDER BY service_name",
                [],
                max_buckets,
            )
        )
        _check_cap(len(rows), max_buckets, "", "there are too many services to list at once")
        by_service: dict[str, dict[str, int]] = {}
        for service, severity, total in rows:
            counts = by_service.setdefault(service, dict.fromkeys(SEVERITY_ORDER, 0))
            counts[severity] = int(total)
        return [ServiceCounts(name, counts) for name, counts in by_service.items()]

    async def severity_buckets(
        self,
        bucket: Bucket,
        since: datetime | None = None,
        until: datetime | None = None,
        service: str | None = None,
        now: datetime | None = None,
        max_buckets: int | None = None,
    ) -> list[SeverityBucket]:
        """Counts per (bucket, service, severity) of logs stored in [since, until).

        Buckets are by the time their batch was committed (service_severity.created_at,
        UTC). Defaults: `until` now, `since` one window before it (1 hour of minutes, 1 day
        of hours, 30 days of days); at most MAX_BUCKETS time buckets in the range and, with
        `max_buckets`, at most that many counts in the answer (else TooManyBuckets).
        """
        since, until = bucket_range(bucket, since, until, now)
        cond = Conditions(["created_at >= %s", "created_at < %s"], [since, until])
        if service is not None:
            cond.add("service_name = %s", service)
        rows = await self._fetch(
            *_capped(
                "SELECT DATE_FORMAT(created_at, %s) AS bucket, service_name, severity,"
                f" SUM(`count`) FROM service_severity{cond.where()}"
                " GROUP BY bucket, service_name, severity ORDER BY bucket, service_name, severity",
                [BUCKET_FORMATS[bucket], *cond.args],
                max_buckets,
            )
        )
        _check_cap(
            len(rows),
            max_buckets,
            "from",
            "shorten the range, use a larger bucket or ask for one service",
        )
        # Up to API_MAX_BUCKETS dates to parse: in a thread, off the event loop.
        return await asyncio.to_thread(_severity_buckets, rows)

    async def consistency(self, max_buckets: int | None = None) -> Consistency:
        """service_logs COUNT(*) against SUM(service_severity.count), per (service, severity).

        Both are read in one consistent snapshot: a batch commits its rows and its counts
        together, so they agree at every snapshot unless something is wrong. With
        `max_buckets`, TooManyBuckets when more pairs than that have logs or counts.
        """

        async def snapshot(cur: aiomysql.Cursor) -> tuple[Rows, Rows]:
            await cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            logs = await _rows(
                cur,
                *_capped(
                    "SELECT service_name, severity, COUNT(*) FROM service_logs"
                    " GROUP BY service_name, severity",
                    [],
                    max_buckets,
                ),
            )
            sums = await _rows(
                cur,
                *_capped(
                    "SELECT service_name, severity, SUM(`count`) FROM service_severity"
                    " GROUP BY service_name, severity",
                    [],
                    max_buckets,
                ),
            )
            await cur.execute("COMMIT")
            return logs, sums

        log_rows, sum_rows = await self._run(snapshot)
        logs = {(s, v): int(c) for s, v, c in log_rows}
        sums = {(s, v): int(c) for s, v, c in sum_rows}
        keys = sorted(logs.keys() | sums.keys(), key=lambda k: (k[0], SEVERITY_ORDER.index(k[1])))
        _check_cap(len(keys), max_buckets, "", "there are too many services to check at once")
        return Consistency(
            [ConsistencyRow(s, v, logs.get((s, v), 0), sums.get((s, v), 0)) for s, v in keys]
        )

    async def patterns(
        self, query: PatternsQuery, max_buckets: int | None = None
    ) -> list[PatternCount]:
        """The top patterns with exact counts and trends (lms.query.patterns), all counted
        in one consistent snapshot, and each one's newest matching log as its example.

        With `max_buckets`, a QueryError when the trends would hold more counts than that.
        """
        if query.since is not None and query.until is not None:
            trend_starts(query, [], max_buckets)  # a trend over the cap: refused before reading
        parts = spans(query.since, query.until)

        async def snapshot(cur: aiomysql.Cursor) -> tuple[list[int], Rows, dict[int, str], Rows]:
            await cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            totals: Counter[int] = Counter()
            edges: Rows = []  # (bucket, pattern, count) of the partial hours
            for span in parts:
                for pid, n in await _rows(cur, *span_sql(query, span, None, by_bucket=False)):
                    totals[int(pid)] += int(n)
                    if span.source == "rows":
                        edges.append((edge_start(span, query.bucket), int(pid), int(n)))
            ids = top(totals, query.limit)
            trend: Rows = []
            templates: dict[int, str] = {}
            if ids:
                await cur.execute("SET SESSION group_concat_max_len = %s", (TREND_TEXT_MAX,))
                for span in trend_spans(parts, query.bucket):
                    if span.source != "rows":
                        trend += await _rows(cur, *span_sql(query, span, ids, by_bucket=True))
                sql = f"SELECT pattern_id, template FROM log_patterns WHERE {any_pattern(len(ids))}"
                templates = {int(pid): text for pid, text in await _rows(cur, sql, ids)}
            await cur.execute("COMMIT")
            return ids, trend, templates, edges

        ids, trend_rows, templates, edges = await self._run(snapshot)
        texts: dict[int, Counter[str]] = {pid: Counter() for pid in ids}
        for pid, text in trend_rows:
            add_trend(texts, pid, text)
        moments = {start: datetime.fromisoformat(start) for c in texts.values() for start in c}
        by_pattern = {
            pid: Counter({moments[start]: n for start, n in counts.items()})
            for pid, counts in texts.items()
        }
        for start, pid, n in edges:
            if pid in by_pattern:
                by_pattern[pid][start] += n
        seen = [start for counts in by_pattern.values() for start in counts]
        starts = trend_starts(query, seen, max_buckets)
        examples = await asyncio.gather(
            *(
                self.logs(
                    LogQuery(
                        pattern_id=pid,
                        service=query.service,
                        severities=query.severities,
                        since=query.since,
                        until=query.until,
                        limit=1,
                    )
                )
                for pid in ids
            )
        )
        return [
            PatternCount(
                pid,
                templates.get(pid, ""),
                sum(by_pattern[pid].values()),
                page.logs[0] if page.logs else None,
                [(start, by_pattern[pid][start]) for start in starts],
            )
            for pid, page in zip(ids, examples, strict=True)
        ]

    async def user_requests(self, query: RequestsQuery) -> LogPage:
        """A page of one user's request logs, oldest first (lms.query.user_requests)."""
        rows = await self._fetch(*build_requests_sql(query))
        next_cursor = None
        if len(rows) > query.limit:
            next_cursor = cursor_after(rows[query.limit - 1]).encode()
        return LogPage([entry_from_row(row) for row in rows[: query.limit]], next_cursor)

    async def snapshot(self, work: Callable[[Fetch], Awaitable[T]]) -> T:
        """`work`'s SELECTs (it gets the function that runs one), all read in one
        consistent snapshot: an aggregate made of parts (lms.query.volume's rollup, edges
        and ranking) must not see a batch in one part and miss it in another."""

        async def read(cur: aiomysql.Cursor) -> T:
            await cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            answer = await work(lambda sql, args: _rows(cur, sql, args))
            await cur.execute("COMMIT")
            return answer

        return await self._run(read)

    async def text_search(self, q: str) -> TextSearch:
        """`q` parsed with the server's full-text token sizes, as GET /v1/logs reads it."""
        await self._ensure_pool()
        return parse_search(q, self.min_token, self.max_token)

    async def ping(self) -> None:
        await self._fetch("SELECT 1", [])

    # --- plumbing ---

    async def _fetch(self, sql: str, args: Sequence[object]) -> Rows:
        return await self._run(lambda cur: _rows(cur, sql, args))

    async def _run(self, work: Callable[[aiomysql.Cursor], Awaitable[T]]) -> T:
        """`work` on a pooled connection: the one way every query runs, so each maps the
        database's failures alike (DatabaseUnavailable: HTTP 503, CLI exit 1)."""
        for attempt in (1, 2):
            try:
                async with self._cursor() as cur:
                    return await work(cur)
            except DATABASE_ERRORS as exc:
                error = classify(exc, "query")
                if attempt == 1 and is_connection_lost(error):
                    continue  # a pooled connection the server closed: once more, fresh
                raise self._unavailable(error) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _unavailable(self, error: StorageError) -> DatabaseUnavailable:
        """What the caller is told (HTTP 503, CLI exit 1): the cause, in words that help,
        without the server's own text (users, hosts, SQL), which goes to `detail`."""
        if error.code in STATEMENT_TIMEOUT_CODES:
            return DatabaseUnavailable(
                f"query took longer than {self._timeout:g}s (API_QUERY_TIMEOUT);"
                " narrow it with more filters or a shorter time range",
                str(error),
            )
        if error.code in SCHEMA_MISSING_CODES:
            return DatabaseUnavailable(
                "the schema is not up to date; run `lms migrate`", str(error)
            )
        return DatabaseUnavailable("database error", str(error))

    @asynccontextmanager
    async def _cursor(self) -> AsyncIterator[aiomysql.Cursor]:
        """A cursor on a pooled connection, bounded in time.

        A connection goes back to the pool after an error the server answered (a statement
        timeout, a missing table): it is still in step. Only one whose state is unknown (the
        network failed, the call timed out or was cancelled mid-answer) is closed.
        """
        pool = await self._ensure_pool()
        try:
            async with asyncio.timeout(self._timeout + 5):
                conn = await pool.acquire()
        except TimeoutError:
            raise DatabaseUnavailable("no database connection free; try again") from None
        keep = False
        try:
            async with asyncio.timeout(self._timeout + 5), conn.cursor() as cur:
                yield cur
            keep = True
        except TimeoutError:
            raise DatabaseUnavailable(
                f"database did not answer within {self._timeout:g}s"
            ) from None
        except pymysql.err.MySQLError as exc:
            keep = await self._still_usable(conn, exc)
            raise
        finally:
            if not keep:
                conn.close()
            self._release(pool, conn)

    async def _still_usable(self, conn: aiomysql.Connection, exc: BaseException) -> bool:
        """Whether `conn` may serve the next query after `exc`: the server answered it
        with an error (not a client-side code), and any transaction it had open is rolled
        back (aiomysql would close one still in a transaction)."""
        code = error_code(exc)
        if code is None or 2000 <= code < 3000:
            return False
        try:
            if conn.get_transaction_status():
                async with asyncio.timeout(self._timeout + 5):
                    await conn.rollback()
        except DATABASE_ERRORS:
            return False
        return True

    def _release(self, pool: aiomysql.Pool, conn: aiomysql.Connection) -> None:
        """Hands `conn` back, and wakes a request waiting for a connection even when `conn`
        was closed: aiomysql's `release` wakes a waiter only for a live connection, so with
        a full pool the waiters would sleep until some other request ended (or their own
        timeout), though the closed connection's slot is free to open a new one. The wake-up
        is aiomysql's own (`Pool._wakeup`, what `release` runs for a live connection);
        tests/test_query_errors.py fails if a new aiomysql changes it."""
        pool.release(conn)
        if conn.closed:
            task = asyncio.get_running_loop().create_task(pool._wakeup())
            self._wakeups.add(task)
            task.add_done_callback(self._wakeups.discard)

    async def _ensure_pool(self) -> aiomysql.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                try:
                    self._pool = await self._create_pool()
                except DATABASE_ERRORS as exc:
                    raise DatabaseUnavailable(
                        "cannot connect to the database", str(exc) or type(exc).__name__
                    ) from exc
            return self._pool

    async def _create_pool(self) -> aiomysql.Pool:
        kwargs = {
            **connect_kwargs(self._settings, self._settings.mysql_database),
            "autocommit": True,
        }
        # Bounded like every connection (lms.store.connection), and by the query timeout: a
        # server that accepts and never answers must not hang a request.
        probe = await connect(
            self._settings,
            self._settings.mysql_database,
            within=connect_timeout(self._settings, self._timeout),
            autocommit=True,
        )
        try:
            async with probe.cursor() as cur:
                await cur.execute(
                    "SELECT VERSION(), @@innodb_ft_min_token_size, @@innodb_ft_max_token_size"
                )
                version, min_token, max_token = (await cur.fetchall())[0]
        finally:
            probe.close()
        self.min_token, self.max_token = int(min_token), int(max_token)
        # group_concat_max_len: the folded series (lms.query.fold; MySQL's default is 1 KiB).
        if "mariadb" in str(version).lower():
            init = f"SET SESSION max_statement_time = {self._timeout:.3f}, SESSION tx_read_only=1"
        else:
            init = (
                f"SET SESSION max_execution_time = {int(self._timeout * 1000)},"
                " SESSION transaction_read_only = 1"
            )
        init += f", SESSION group_concat_max_len = {GROUP_CONCAT_MAX_LEN}"
        log.debug("read pool opened", server=version, size=self._pool_size)
        return await aiomysql.create_pool(
            minsize=0, maxsize=self._pool_size, pool_recycle=3600, init_command=init, **kwargs
        )


def _severity_buckets(rows: Rows) -> list[SeverityBucket]:
    return [
        SeverityBucket(datetime.fromisoformat(start), name, severity, int(count))
        for start, name, severity, count in rows
    ]


async def _rows(cur: aiomysql.Cursor, sql: str, args: Sequence[object]) -> Rows:
    await cur.execute(sql, tuple(args))
    return list(await cur.fetchall())


def _capped(sql: str, args: Sequence[object], cap: int | None) -> tuple[str, list[object]]:
    """`sql` reading at most `cap` + 1 rows: one more than allowed is enough to refuse, and
    the server never sends the rest."""
    if cap is None:
        return sql, list(args)
    return f"{sql} LIMIT %s", [*args, cap + 1]


def _check_cap(groups: int, cap: int | None, field: str, narrow: str) -> None:
    if cap is not None and groups > cap:
        raise TooManyBuckets(field, cap, narrow)
