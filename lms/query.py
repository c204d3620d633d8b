"""The read side of the database: every query of `lms api`, `lms logs` and `lms stats`.

`lms/storage.py` owns the write SQL; this module owns all read SQL, and every value in it is a
bound parameter (the only text spliced into statements comes from fixed tables below).

Logs are returned newest first, ordered by (`timestamp` DESC, id DESC), and paged with a keyset
cursor: the (timestamp, id) of the last row of a page, so the next page starts strictly after
it. Pages never repeat or skip rows, even while new logs arrive. The time range is half-open:
`since` is inclusive and `until` exclusive, so consecutive ranges never overlap.

Which index answers a query (see sql/002_log_context.sql):
- a selective filter (trace, span, resource, commit, parent resource) drives the query
  through its own index, the other filters are checked on the rows it finds (the service
  already on the entries of the resource, commit and parent-resource indexes, which hold it
  since sql/003);
- otherwise the query is split per severity into a UNION ALL of branches, each reading the
  (service_name, severity, timestamp) or (severity, timestamp) index backwards from the cursor
  and stopping after `limit + 1` rows; the branches are merged and cut to the page. So a page
  reads at most 5 x (limit + 1) index entries whatever the table size;
- a full-text search first probes the newest entries of those same branches (`LogReader`'s
  probe, `build_probe_sql`). Their indexes hold short payloads (sql/004), so the words are
  tested on index entries and only matching rows are read. Only when the probe cannot fill
  the page does the FULLTEXT index answer (trace and span ids: their few rows are all read).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiomysql
import pymysql
import structlog

from lms.model import Severity
from lms.settings import Settings
from lms.storage import connect_kwargs

log = structlog.get_logger("lms.query")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_Q = 512
"""Characters of a full-text search."""
MAX_FT_TERMS = 16
"""Words and phrases of one full-text search; each one is another index lookup."""
SEVERITY_ORDER = tuple(s.value for s in Severity)

Bucket = Literal["minute", "hour", "day"]
BUCKET_FORMATS: Mapping[str, str] = {
    "minute": "%Y-%m-%d %H:%i:00",
    "hour": "%Y-%m-%d %H:00:00",
    "day": "%Y-%m-%d 00:00:00",
}
BUCKET_SPANS: Mapping[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
BUCKET_DEFAULT_WINDOWS: Mapping[str, timedelta] = {
    "minute": timedelta(hours=1),
    "hour": timedelta(days=1),
    "day": timedelta(days=30),
}
MAX_BUCKETS = 10_000

# InnoDB's built-in full-text stopword list (MariaDB and MySQL 8): these words are not indexed,
# so a required `+the` would match nothing. They still count inside a "quoted phrase".
INNODB_STOPWORDS = frozenset(
    {
        "a", "about", "an", "are", "as", "at", "be", "by", "com", "de", "en", "for", "from",
        "how", "i", "in", "is", "it", "la", "of", "on", "or", "that", "the", "this", "to",
        "was", "what", "when", "where", "who", "will", "with", "und", "www",
    }
)  # fmt: skip

_COLUMNS = (
    "id, message_id, service_name, severity, `timestamp`, payload, resource_id, trace_id,"
    " span_id, `commit`, metadata"
)
_JOINED_COLUMNS = ", ".join(f"l.{c.strip()}" for c in _COLUMNS.split(","))
"""The columns of a page read through a join with service_logs AS l."""
_ORDER = "ORDER BY `timestamp` DESC, id DESC"
_IX_TIMESTAMP = "ix_service_logs_timestamp"
_IX_SEVERITY = "ix_service_logs_severity_ts"
_IX_SERVICE_SEVERITY = "ix_service_logs_service_severity_ts"
_IX_RESOURCE = "ix_service_logs_resource_ts"
_IX_COMMIT = "ix_service_logs_commit_ts"
_IX_PARENT = "ix_service_logs_parent_ts"
PROBE_DEPTH = 50_000
"""Newest candidate index entries a full-text search first checks with REGEXPs (~0.5 us each,
on their short_payload), before it falls back to the FULLTEXT index, whose cost grows with
the number of matches in the whole table, not with the page."""
_WORD = re.compile(r"\w+")
_CURSOR_VERSION = "1"
# Errors after which a read can safely be retried on a fresh connection.
_RECONNECT_ERRORS = frozenset({2003, 2006, 2013, 2055})
_TIMEOUT_ERRORS = frozenset({1969, 3024})  # MariaDB max_statement_time, MySQL 8


class QueryError(ValueError):
    """Invalid input to a query; `field` names the parameter (HTTP 422, CLI exit 2)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DatabaseUnavailable(Exception):
    """The database could not answer (down, timed out, schema missing); HTTP 503."""


# --- cursors -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the (timestamp, id) of its last row. Opaque to clients."""

    timestamp: datetime
    id: int

    def encode(self) -> str:
        micros = _to_micros(self.timestamp)
        raw = f"{_CURSOR_VERSION}:{micros}:{self.id}".encode("ascii")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        invalid = QueryError("cursor", "not a cursor returned by this API (next_cursor)")
        if not text or len(text) > 64 or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            version, micros, row_id = raw.split(":")
            if version != _CURSOR_VERSION or not row_id.isdigit():
                raise invalid
            if not re.fullmatch(r"-?[0-9]{1,18}", micros):  # before 1970 is negative
                raise invalid
            return cls(_from_micros(int(micros)), int(row_id))
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
            raise invalid from None


_EPOCH = datetime(1970, 1, 1)


def _to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> datetime:
    moment = _EPOCH + timedelta(microseconds=micros)
    if not datetime(1000, 1, 1) <= moment <= datetime(9999, 12, 31, 23, 59, 59, 999_999):
        raise ValueError("cursor timestamp out of range")
    return moment


Bound = Cursor
"""The (timestamp, id) of the last row a probe stream reads."""


# --- queries -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Filters of GET /v1/logs and `lms logs`; all optional, combined with AND.

    `since`/`until` are naive UTC; `since` is inclusive, `until` exclusive.
    """

    service: str | None = None
    severities: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    resource_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    commit: str | None = None
    parent_resource_id: str | None = None
    q: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError("limit", f"must be 1..{MAX_LIMIT}, not {self.limit}")
        unknown = [s for s in self.severities if s not in SEVERITY_ORDER]
        if unknown:
            raise QueryError(
                "severity", f"{unknown[0]!r} is not one of {', '.join(SEVERITY_ORDER)}"
            )
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise QueryError("to", "must be later than from (the range is [from, to))")


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: int
    message_id: str
    service_name: str
    severity: str
    timestamp: datetime
    payload: str
    resource_id: str | None
    trace_id: str | None
    span_id: str | None
    commit: str | None
    metadata: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, with RFC 3339 UTC timestamps."""
        return {
            "id": self.id,
            "message_id": self.message_id,
            "timestamp": rfc3339(self.timestamp),
            "service_name": self.service_name,
            "severity": self.severity,
            "payload": self.payload,
            "resource_id": self.resource_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "commit": self.commit,
            "metadata": self.metadata,
        }


@dataclass(slots=True)
class LogPage:
    logs: list[LogEntry]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ServiceCounts:
    service_name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class SeverityBucket:
    start: datetime
    service_name: str
    severity: str
    count: int


@dataclass(frozen=True, slots=True)
class ConsistencyRow:
    service_name: str
    severity: str
    logs: int
    severity_total: int

    @property
    def agree(self) -> bool:
        return self.logs == self.severity_total


@dataclass(slots=True)
class Consistency:
    rows: list[ConsistencyRow] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return all(row.agree for row in self.rows)


def rfc3339(moment: datetime) -> str:
    """A naive UTC datetime as RFC 3339 with microseconds and Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class TextSearch:
    """A full-text search, as the database runs it.

    `against` is the MATCH ... AGAINST (... IN BOOLEAN MODE) string: it finds candidates
    through the FULLTEXT index. `patterns` are REGEXPs every matching payload satisfies (a
    word as a whole word, a phrase as its words separated by non-word characters, case-
    insensitive): they check phrases (faster than InnoDB's own phrase check, which re-reads
    every candidate) and let a search run without the FULLTEXT index, along a time index.
    They exist only when every word is ASCII; otherwise `patterns` is empty and `against`
    holds "quoted" phrases for InnoDB to check.
    """

    against: str
    patterns: tuple[str, ...]


def parse_search(text: str, min_token: int = 3, max_token: int = 84) -> TextSearch:
    """Turn user text into a TextSearch: every word required, "quoted text" a phrase.

    Operators of boolean mode (+ - < > ( ) ~ * @ " and so on) in the input are never passed
    through: the text is cut into words (letters, digits, _) and only those are used. Words
    InnoDB does not index (shorter than `min_token`, longer than `max_token`, stopwords) are
    dropped outside phrases, where they would match nothing. Raises QueryError if nothing
    is left.
    """
    if len(text) > MAX_Q:
        raise QueryError("q", f"has {len(text)} characters, allowed at most {MAX_Q}")

    def indexed(word: str) -> bool:
        return min_token <= len(word) <= max_token and word.lower() not in INNODB_STOPWORDS

    terms: list[tuple[str, ...]] = []  # a word is a 1-tuple, a phrase ("", *words)
    for index, part in enumerate(text.split('"')):
        words = _WORD.findall(part)
        if index % 2:  # inside quotes (an unclosed quote runs to the end)
            if any(indexed(w) for w in words):
                terms.append(("", *words) if len(words) > 1 else (words[0],))
        else:
            terms.extend((w,) for w in words if indexed(w))
    terms = list(dict.fromkeys(terms))
    if not terms:
        raise QueryError(
            "q",
            f"has no searchable word: words of fewer than {min_token} characters and common"
            " stopwords (the, to, of, ...) are not indexed; quote them inside a phrase with"
            ' a longer word, e.g. "failed to connect"',
        )
    if len(terms) > MAX_FT_TERMS:
        raise QueryError("q", f"has {len(terms)} words and phrases, allowed at most {MAX_FT_TERMS}")
    ascii_only = all(word.isascii() for term in terms for word in term)
    against: list[str] = []
    patterns: list[str] = []
    for term in terms:
        words = term[1:] if term[0] == "" else term
        if len(words) == 1:
            against.append(f"+{words[0]}")
        elif ascii_only:
            against.extend(f"+{w}" for w in words if indexed(w))
        else:
            against.append('+"' + " ".join(words) + '"')
        if ascii_only:
            patterns.append(r"(?i)\b" + r"\W+".join(words) + r"\b")
    return TextSearch(" ".join(dict.fromkeys(against)), tuple(patterns) if ascii_only else ())


def _filters(query: LogQuery, search: TextSearch | None, use_index: bool) -> _Conditions:
    """The conditions of every filter but the time range and the cursor."""
    cond = _Conditions()
    for column, value in (
        ("resource_id", query.resource_id),
        ("trace_id", query.trace_id),
        ("span_id", query.span_id),
        ("`commit`", query.commit),
        ("parent_resource_id", query.parent_resource_id),
    ):
        if value is not None:
            cond.add(f"{column} = %s", value)
    if search is not None:
        if use_index:
            cond.add("MATCH (payload) AGAINST (%s IN BOOLEAN MODE)", search.against)
        for pattern in search.patterns:
            cond.add("payload REGEXP %s", pattern)
    if query.service is not None:
        cond.add("service_name = %s", query.service)
    severities = _severities(query)
    if severities:
        cond.add(f"severity IN ({', '.join(['%s'] * len(severities))})", *severities)
    return cond


def _time_range(query: LogQuery) -> _Conditions:
    cond = _Conditions()
    if query.since is not None:
        cond.add("`timestamp` >= %s", query.since)
    if query.until is not None:
        cond.add("`timestamp` < %s", query.until)
    return cond + _before(query.cursor)


def _before(bound: Cursor | None) -> _Conditions:
    """Rows strictly before `bound` in (timestamp, id) order (no condition for None)."""
    cond = _Conditions()
    if bound is not None:
        # Expanded row comparison (timestamp, id) < (t, i): MariaDB only ranges over this form.
        t = bound.timestamp
        cond.add("`timestamp` <= %s AND (`timestamp` < %s OR id < %s)", t, t, bound.id)
    return cond


def _severities(query: LogQuery) -> list[str]:
    return sorted(set(query.severities), key=SEVERITY_ORDER.index)


@dataclass(slots=True)
class _Conditions:
    sql: list[str] = field(default_factory=list)
    args: list[object] = field(default_factory=list)

    def add(self, condition: str, *values: object) -> None:
        self.sql.append(condition)
        self.args.extend(values)

    def __add__(self, other: _Conditions) -> _Conditions:
        return _Conditions([*self.sql, *other.sql], [*self.args, *other.args])

    def where(self) -> str:
        return " WHERE " + " AND ".join(self.sql) if self.sql else ""


def build_logs_sql(
    query: LogQuery, search: TextSearch | None = None, use_index: bool = True
) -> tuple[str, list[object]]:
    """The SELECT of one page (limit + 1 rows, to know whether another page follows).

    Pure, so tests can EXPLAIN exactly what the API runs.

    Without full-text search and trace/span ids, it is a UNION ALL with one branch per
    severity (the ones asked for, or all five) over the index of the driving filter, which is
    (column, severity, timestamp) for service, resource_id, commit and parent_resource_id and
    (severity, timestamp) without any. Each branch reads that index backwards from the cursor
    and stops after limit + 1 entries; only the (timestamp, id) of the merged page go on to
    read their rows (a deferred join), so a page reads ~limit rows whatever the table size.
    The indexes are forced: MariaDB would otherwise sometimes pick a `ref` on the prefix and
    walk through every newer row.

    With `search` the FULLTEXT index finds the candidates (`use_index`), or only the REGEXPs
    filter (trace/span lookups); trace and span ids select so few rows that one plain SELECT
    sorts them.
    """
    fetch = query.limit + 1
    if search is not None or query.trace_id is not None or query.span_id is not None:
        cond = _filters(query, search, use_index) + _time_range(query)
        sql = f"SELECT {_COLUMNS} FROM service_logs{cond.where()} {_ORDER} LIMIT %s"
        return sql, [*cond.args, fetch]
    index, eq = _driver(query)
    others = _filters(replace(query, severities=()), None, False) + _time_range(query)
    branches: list[str] = []
    args: list[object] = []
    for severity in _severities(query) or SEVERITY_ORDER:
        cond = eq + _Conditions(["severity = %s"], [severity]) + others
        branches.append(
            f"(SELECT id, `timestamp` FROM service_logs FORCE INDEX ({index}){cond.where()}"
            f" {_ORDER} LIMIT %s)"
        )
        args.extend([*cond.args, fetch])
    return _page_rows(branches), [*args, fetch]


def _page_rows(branches: list[str]) -> str:
    """Merge branches that each select (id, timestamp) into the page, then read its rows: a
    deferred join, so only the rows of the page are read whole."""
    union = " UNION ALL ".join(branches)
    return (
        f"SELECT {_JOINED_COLUMNS} FROM (SELECT id, `timestamp` FROM ({union})"
        f" AS branches {_ORDER} LIMIT %s) AS page JOIN service_logs AS l ON l.id = page.id"
        " ORDER BY page.`timestamp` DESC, page.id DESC"
    )


def _driver(query: LogQuery) -> tuple[str, _Conditions]:
    """The index a query reads (all end in severity, timestamp) and its equality prefix."""
    for index, column, value in (
        (_IX_RESOURCE, "resource_id", query.resource_id),
        (_IX_COMMIT, "`commit`", query.commit),
        (_IX_PARENT, "parent_resource_id", query.parent_resource_id),
        (_IX_SERVICE_SEVERITY, "service_name", query.service),
    ):
        if value is not None:
            return index, _Conditions([f"{column} = %s"], [value])
    return _IX_SEVERITY, _Conditions()


@dataclass(frozen=True, slots=True)
class _Stream:
    """Rows read in (timestamp, id) order along one index, where `eq` holds."""

    index: str
    eq: _Conditions


def _streams(query: LogQuery) -> list[_Stream]:
    """How a probe walks the newest rows: one stream per severity along the index of the
    driving filter, or of the severity alone without one."""
    index, eq = _driver(query)
    return [
        _Stream(index, eq + _Conditions(["severity = %s"], [severity]))
        for severity in _severities(query) or SEVERITY_ORDER
    ]


@dataclass(frozen=True, slots=True)
class ProbePlan:
    """SQL of a probe: first the bounds, then the probe itself given them."""

    bounds_sql: str
    bounds_args: list[object]
    probe: Callable[..., tuple[str, list[object]]]
    """(floor[, fetch]) -> the SQL of the probe, which returns at most `fetch` rows (default:
    limit + 1, a page and whether another follows)."""


def build_probe_sql(
    query: LogQuery,
    search: TextSearch,
    depth: int,
    ceiling: Bound | None = None,
    walk: int | None = None,
) -> ProbePlan:
    """A search without the FULLTEXT index over the next `depth` candidate entries below
    `ceiling` (None: the newest), that is, below what an earlier, shallower probe read.

    The candidates are read in streams (see `_streams`). The bounds query gives, per stream,
    the (timestamp, id) of its `depth / streams`-th entry below the ceiling, and the stream's
    number, reading index entries only; no row for a stream that is shorter. Without any
    filter one walk down the small timestamp index gives the bound of all streams at once.
    The newest bound is the floor down to which every stream is then read, so every row found
    is certain (nothing newer is left unread) and no stream is read further than the page can
    use. The newest bound comes from the densest stream: a deeper probe walks only that one
    (`walk`, its number), as the others would only give older bounds.

    The probe reads the entries from the floor up to the ceiling. Every index it reads holds
    short_payload (sql/004): an entry whose short_payload lacks a word is dropped there. The
    other entries are sorted by time and their rows read in that order, each checked against
    every filter and the REGEXPs, until `fetch` rows match. So the rows read are those found,
    plus the long payloads (over 255 characters) of the window that do not match.
    """
    streams = _streams(query)
    window = _time_range(query) + _before(ceiling)
    walks = streams
    if streams[0].index == _IX_SEVERITY and not query.severities:
        walks = [_Stream(_IX_TIMESTAMP, _Conditions())]
    per_walk = max(depth // len(walks), query.limit + 1)
    parts: list[str] = []
    args: list[object] = []
    for number, stream in enumerate(walks):
        if walk is not None and number != walk:
            continue
        cond = stream.eq + window
        parts.append(
            f"(SELECT `timestamp`, id, {number} FROM service_logs"
            f" FORCE INDEX ({stream.index}){cond.where()} {_ORDER} LIMIT 1 OFFSET %s)"
        )
        args.extend([*cond.args, per_walk - 1])
    bounds_sql = " UNION ALL ".join(parts)

    on_entry = _Conditions()
    if search.patterns:
        words = " AND ".join(["short_payload REGEXP %s"] * len(search.patterns))
        on_entry.add(f"(short_payload IS NULL OR ({words}))", *search.patterns)
    on_row = _filters(query, search, use_index=False)

    def probe(floor: Bound | None, fetch: int = query.limit + 1) -> tuple[str, list[object]]:
        branches: list[str] = []
        branch_args: list[object] = []
        for stream in streams:
            cond = stream.eq + window + on_entry
            if floor is not None:
                t = floor.timestamp
                cond.add("`timestamp` >= %s AND (`timestamp` > %s OR id >= %s)", t, t, floor.id)
            branches.append(
                f"SELECT id, `timestamp` FROM service_logs FORCE INDEX ({stream.index})"
                f"{cond.where()}"
            )
            branch_args.extend(cond.args)
        # STRAIGHT_JOIN: the candidates first, sorted, so rows are read newest first and
        # only until the page is full.
        sql = (
            f"SELECT STRAIGHT_JOIN {_JOINED_COLUMNS} FROM ({' UNION ALL '.join(branches)}) AS c"
            f" JOIN service_logs AS l ON l.id = c.id{on_row.where()}"
            f" ORDER BY c.`timestamp` DESC, c.id DESC LIMIT %s"
        )
        return sql, [*branch_args, *on_row.args, fetch]

    return ProbePlan(bounds_sql, args, probe)


def first_probe_depth(full: int, limit: int) -> int:
    """A tenth of the full depth: a common word fills the page from that many entries."""
    return min(full, max(full // 10, limit + 1))


def next_probe_depth(depth: int, found: int, limit: int, full: int) -> int:
    """How deep the next probe looks, from what the shallower ones found.

    Matches grow with depth, so a probe that found `found` of the `limit + 1` rows it needs
    at `depth` should find them all at about depth * (limit + 1) / found; 20% more covers
    most of the chance in so few matches (a miss costs one more probe, below this one), and
    each probe goes at least half as deep again. Nothing found: the word is rare here, go to
    full depth at once.
    """
    if found == 0:
        return full
    wanted = math.ceil(depth * (limit + 1) / found * 1.2)
    return min(full, max(wanted, depth * 3 // 2))


# --- the reader ----------------------------------------------------------------------------


class LogReader:
    """Read-only access through a small aiomysql pool, opened lazily (the database may be
    down when the API starts) and usable with a read-only MySQL user (GRANT SELECT).

    Each session is made read-only and gets a server-side statement time limit, so a runaway
    query cannot pile up on the server.
    """

    def __init__(self, settings: Settings, pool_size: int = 10, timeout: float = 10.0) -> None:
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
        entries = [_entry(row) for row in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            last = entries[-1]
            next_cursor = Cursor(last.timestamp, last.id).encode()
        return LogPage(entries, next_cursor)

    async def _log_rows(self, query: LogQuery) -> list[tuple[Any, ...]]:
        if query.q is None:
            return await self._fetch(*build_logs_sql(query))
        await self._ensure_pool()  # learns the server's full-text token sizes
        search = parse_search(query.q, self.min_token, self.max_token)
        if search.patterns:
            if query.trace_id is not None or query.span_id is not None:
                # A trace has few rows: check them all, no FULLTEXT lookup needed.
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

    async def services(self) -> list[ServiceCounts]:
        """Per service, the total count per severity (every severity present, 0 if none)."""
        rows = await self._fetch(
            "SELECT service_name, severity, SUM(`count`) FROM service_severity"
            " GROUP BY service_name, severity ORDER BY service_name",
            [],
        )
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
    ) -> list[SeverityBucket]:
        """Counts per (bucket, service, severity) of logs stored in [since, until).

        Buckets are by the time their batch was committed (service_severity.created_at,
        UTC). Defaults: `until` now, `since` one window before it (1 hour of minutes, 1 day
        of hours, 30 days of days); at most MAX_BUCKETS buckets.
        """
        since, until = bucket_range(bucket, since, until, now)
        cond = _Conditions(["created_at >= %s", "created_at < %s"], [since, until])
        if service is not None:
            cond.add("service_name = %s", service)
        rows = await self._fetch(
            "SELECT DATE_FORMAT(created_at, %s) AS bucket, service_name, severity,"
            f" SUM(`count`) FROM service_severity{cond.where()}"
            " GROUP BY bucket, service_name, severity ORDER BY bucket, service_name, severity",
            [BUCKET_FORMATS[bucket], *cond.args],
        )
        return [
            SeverityBucket(datetime.fromisoformat(start), name, severity, int(count))
            for start, name, severity, count in rows
        ]

    async def consistency(self) -> Consistency:
        """service_logs COUNT(*) against SUM(service_severity.count), per (service, severity).

        Both are read in one consistent snapshot: a batch commits its rows and its counts
        together, so they agree at every snapshot unless something is wrong.
        """
        async with self._cursor() as cur:
            await cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            try:
                await cur.execute(
                    "SELECT service_name, severity, COUNT(*) FROM service_logs"
                    " GROUP BY service_name, severity"
                )
                logs = {(s, v): int(c) for s, v, c in await cur.fetchall()}
                await cur.execute(
                    "SELECT service_name, severity, SUM(`count`) FROM service_severity"
                    " GROUP BY service_name, severity"
                )
                sums = {(s, v): int(c) for s, v, c in await cur.fetchall()}
            finally:
                await cur.execute("COMMIT")
        keys = sorted(logs.keys() | sums.keys(), key=lambda k: (k[0], SEVERITY_ORDER.index(k[1])))
        return Consistency(
            [ConsistencyRow(s, v, logs.get((s, v), 0), sums.get((s, v), 0)) for s, v in keys]
        )

    async def ping(self) -> None:
        await self._fetch("SELECT 1", [])

    # --- plumbing ---

    async def _fetch(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            try:
                async with self._cursor() as cur:
                    await cur.execute(sql, tuple(args))
                    return list(await cur.fetchall())
            except pymysql.err.OperationalError as exc:
                code = exc.args[0] if exc.args else None
                if attempt == 1 and code in _RECONNECT_ERRORS:
                    continue  # a pooled connection the server closed: once more, fresh
                if code in _TIMEOUT_ERRORS:
                    raise DatabaseUnavailable(
                        f"query took longer than {self._timeout:g}s (API_QUERY_TIMEOUT);"
                        " narrow it with more filters or a shorter time range"
                    ) from None
                raise DatabaseUnavailable(f"database error: {exc.args[-1]}") from exc
            except pymysql.err.ProgrammingError as exc:
                if exc.args and exc.args[0] in (1054, 1146):  # unknown column / table
                    raise DatabaseUnavailable(
                        f"schema is not up to date ({exc.args[-1]}); run `lms migrate`"
                    ) from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def _cursor(self) -> AsyncIterator[aiomysql.Cursor]:
        pool = await self._ensure_pool()
        try:
            async with asyncio.timeout(self._timeout + 5):
                conn = await pool.acquire()
        except TimeoutError:
            raise DatabaseUnavailable("no database connection free; try again") from None
        try:
            async with asyncio.timeout(self._timeout + 5), conn.cursor() as cur:
                yield cur
        except TimeoutError:
            conn.close()
            raise DatabaseUnavailable(
                f"database did not answer within {self._timeout:g}s"
            ) from None
        except BaseException:
            conn.close()  # its state is unknown: never hand it out again
            raise
        finally:
            pool.release(conn)

    async def _ensure_pool(self) -> aiomysql.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                try:
                    self._pool = await self._create_pool()
                except (pymysql.err.MySQLError, OSError, TimeoutError) as exc:
                    raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
            return self._pool

    async def _create_pool(self) -> aiomysql.Pool:
        kwargs = {
            **connect_kwargs(self._settings, self._settings.mysql_database),
            "autocommit": True,
        }
        probe = await aiomysql.connect(**kwargs)
        try:
            async with probe.cursor() as cur:
                await cur.execute(
                    "SELECT VERSION(), @@innodb_ft_min_token_size, @@innodb_ft_max_token_size"
                )
                version, min_token, max_token = (await cur.fetchall())[0]
        finally:
            probe.close()
        self.min_token, self.max_token = int(min_token), int(max_token)
        if "mariadb" in str(version).lower():
            init = f"SET SESSION max_statement_time = {self._timeout:.3f}, SESSION tx_read_only=1"
        else:
            init = (
                f"SET SESSION max_execution_time = {int(self._timeout * 1000)},"
                " SESSION transaction_read_only = 1"
            )
        log.debug("read pool opened", server=version, size=self._pool_size)
        return await aiomysql.create_pool(
            minsize=0, maxsize=self._pool_size, pool_recycle=3600, init_command=init, **kwargs
        )


def bucket_range(
    bucket: Bucket,
    since: datetime | None,
    until: datetime | None,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """The [since, until) of a severity series, defaults applied and size checked."""
    if bucket not in BUCKET_FORMATS:
        raise QueryError("bucket", f"must be one of {', '.join(BUCKET_FORMATS)}")
    if until is None:
        until = (now or datetime.now(UTC)).replace(tzinfo=None)
    if since is None:
        since = until - BUCKET_DEFAULT_WINDOWS[bucket]
    if until <= since:
        raise QueryError("to", "must be later than from (the range is [from, to))")
    if (until - since) / BUCKET_SPANS[bucket] > MAX_BUCKETS:
        raise QueryError(
            "from",
            f"the range holds more than {MAX_BUCKETS} {bucket} buckets;"
            " shorten it or use a larger bucket",
        )
    return since, until


def _entry(row: Sequence[Any]) -> LogEntry:
    metadata = row[10]
    if isinstance(metadata, bytes | str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            metadata = None
    return LogEntry(
        id=int(row[0]),
        message_id=row[1],
        service_name=row[2],
        severity=row[3],
        timestamp=row[4],
        payload=row[5],
        resource_id=row[6],
        trace_id=row[7],
        span_id=row[8],
        commit=row[9],
        metadata=metadata if isinstance(metadata, dict) else None,
    )
