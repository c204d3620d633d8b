"""Realistic stored logs in bulk, for the query benchmark and the query-plan tests.

The planner of MariaDB costs plans the way it does on big tables only when the data looks like
production: 48 services of skewed volume, the usual severity mix, resource ids, traces of ~8
spans, commits that change with deploys, metadata.parentResourceId on half of the rows and
payloads from ~20 templates with ids, numbers and a few rare words; the HTTP access lines also
carry lms_client's request metadata (metadata.http: 12 route templates, statuses with ~4% 4xx
and ~2% 5xx, log-normal durations; metadata.user_id: ~5,000 users, a few very active), drawn
from a random sequence of their own so every other column stays as it was. Through Pub/Sub would
take hours for millions of rows, so `bulk_load` writes them directly: the schema comes from the
normal migrations, the secondary and FULLTEXT indexes are dropped, the rows go in as multi-row
INSERTs in timestamp order (as a live system writes them), and the indexes are rebuilt at the
end (a sorted index build is far faster than maintaining them row by row) before ANALYZE TABLE.
The rollups a live `lms mon` writes in each batch transaction (service_severity, volume_rollup,
commit_rollup, the request rollups, and the patterns: each row's pattern_id, log_patterns and
the rollups of sql/013) are filled with the same counts, so every analytics endpoint has its
real data to read.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

from pymysql.cursors import Cursor

from lms.devtools.database import connect_blocking
from lms.domain.patterns import pattern_of
from lms.domain.record import LogRecord
from lms.domain.requests import request_of
from lms.domain.severity import SEVERITY_ORDER
from lms.settings import load_settings
from lms.store.migrations import Migrator
from lms.store.patterns import CountKey, tier_rows
from lms.store.patterns import hour_of as pattern_hour
from lms.store.request_rollup import RequestRollup
from lms.store.volume_rollup import (
    INSERT_ROLLUP,
    UPSERT_COMMITS,
    RollupKey,
    commit_rows,
    hour_of,
    rollup_rows,
)

END = datetime(2024, 6, 1)
SPAN = timedelta(days=30)
_SERVICE_NAMES = [
    "api", "checkout", "billing", "auth", "search", "cart", "catalog", "inventory",
    "shipping", "payments", "notify", "email", "sms", "push", "users", "profile",
    "sessions", "gateway", "edge", "cdn", "images", "video", "recommend", "ranking",
    "ads", "metrics", "logging", "audit", "admin", "reports", "export", "import",
    "sync", "scheduler", "cron", "worker", "queue", "cache", "db", "replica",
    "backup", "storage", "upload", "download", "pricing", "tax", "fraud", "ledger",
]  # fmt: skip
SERVICES = [f"svc-{name}" for name in _SERVICE_NAMES]
SERVICE_WEIGHTS = [1 / (i + 1) for i in range(len(SERVICES))]
SEVERITIES = list(SEVERITY_ORDER)
SEVERITY_WEIGHTS = [30, 45, 15, 8, 2]
WORDS = [
    "order", "user", "cart", "item", "payment", "invoice", "account", "session",
    "token", "profile", "image", "video", "search", "query", "index", "shard",
    "replica", "primary", "cluster", "node", "pod", "container", "volume", "bucket",
    "topic", "queue", "job", "task", "batch", "stream", "event", "message",
    "request", "response", "upstream", "downstream", "backend",
]  # fmt: skip
TEMPLATES = {
    "debug": [
        "cache miss for key {w}:{id}",
        "loaded {n} {w} rows from {table} in {ms} ms",
        "worker {n} picked job {id} from queue {w}",
    ],
    "info": [
        "GET /api/v1/{w}/{id} 200 in {ms} ms",
        "user {id} logged in from {device}",
        "POST /api/v1/{w} 201 in {ms} ms",
        "order {id} paid with {device}",
    ],
    "warn": [
        "slow query on {table} took {ms} ms",
        "retrying {w} request in {ms} ms (attempt {n})",
        "disk usage at {n} percent on volume {w}",
    ],
    "error": [
        "Failed to connect to {table} at 10.0.{n}.{m}:3306 after {n} attempts",
        "timeout waiting for {w} after {ms} ms",
        "payment {id} declined: {reason}",
        "connection reset by peer 10.0.{n}.{m}",
    ],
    "fatal": [
        "Failed to connect to {table}: giving up, shutting down",
        "OutOfMemoryError in {w} worker {n}",
        "deadlock detected on {table}, aborting",
    ],
}
TABLES = ["orders", "users", "payments", "sessions", "inventory", "ledger", "carts", "events"]
DEVICES = ["android", "iphone", "firefox", "chrome", "safari", "cli"]
REASONS = ["insufficient funds", "card expired", "fraud suspected", "limit exceeded"]
ROUTES = [
    ("GET", "/api/v1/orders/{id}"), ("GET", "/api/v1/orders"), ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/users/{id}"), ("PUT", "/api/v1/users/{id}"), ("GET", "/api/v1/search"),
    ("GET", "/api/v1/cart"), ("POST", "/api/v1/cart/items"), ("DELETE", "/api/v1/cart/items/{id}"),
    ("POST", "/api/v1/payments"), ("GET", "/healthz"), ("GET", "/api/v1/items/{id}"),
]  # fmt: skip
ROUTE_WEIGHTS = [1 / (i + 1) for i in range(len(ROUTES))]
STATUSES = [200, 201, 204, 304, 400, 401, 404, 409, 500, 502, 503]
STATUS_WEIGHTS = [70, 10, 5, 9, 1, 0.5, 2, 0.5, 1, 0.5, 0.5]

COLUMNS = (
    "message_id, batch_id, service_name, payload, severity, `timestamp`, resource_id,"
    " trace_id, span_id, `commit`, metadata"
)


class SeedRow(NamedTuple):
    """One row of service_logs, in the order of COLUMNS."""

    message_id: str
    batch_id: int
    service_name: str
    payload: str
    severity: str
    timestamp: datetime
    resource_id: str | None
    trace_id: str | None
    span_id: str | None
    commit: str | None
    metadata: str | None

    def record(self) -> LogRecord:
        """The same log as the write path of `lms mon` receives it."""
        return LogRecord(
            self.service_name,
            self.payload,
            self.severity,
            self.timestamp,
            self.resource_id,
            self.trace_id,
            self.span_id,
            self.commit,
            self.metadata,
        )


def _hex(*parts: object, size: int = 32) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=size // 2).hexdigest()


def request_metadata(rng: random.Random, extra: str | None) -> str:
    """The metadata of an HTTP access line: lms_client's request fields, and `extra` (the
    row's other metadata, compact JSON) merged in."""
    method, route = rng.choices(ROUTES, ROUTE_WEIGHTS)[0]
    status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
    duration = round(rng.lognormvariate(3.2 if status < 500 else 6.5, 0.9), 3)
    user = min(int((rng.paretovariate(1.0) - 1) * 50), 5000)
    path = route.replace("{id}", str(rng.randrange(10**6)))
    http = (
        f'"http":{{"method":"{method}","route":"{route}","path":"{path}",'
        f'"status_code":{status},"duration_ms":{duration},"outcome":"response"}}'
    )
    return "{" + http + f',"user_id":{user}' + ("," + extra[1:-1] if extra else "") + "}"


def generate(rows: int, seed: int = 6, span: timedelta = SPAN) -> Iterator[SeedRow]:
    """`rows` realistic service_logs rows, oldest first, spread over the `span` before END."""
    rng = random.Random(seed)
    requests = random.Random(seed + 1_000_003)
    step = span / rows
    start = END - span
    trace = span_in_trace = 0
    for i in range(rows):
        ts = start + step * i + timedelta(microseconds=rng.randrange(0, 1000))
        service = rng.choices(SERVICES, SERVICE_WEIGHTS)[0]
        severity = rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
        template = rng.choice(TEMPLATES[severity])
        payload = template.format(
            w=rng.choice(WORDS),
            id=rng.randrange(10**6, 10**7),
            n=rng.randrange(1, 250),
            m=rng.randrange(1, 250),
            ms=rng.randrange(1, 5000),
            table=rng.choice(TABLES),
            device=rng.choice(DEVICES),
            reason=rng.choice(REASONS),
        )
        resource = f"{service}-{rng.randrange(100)}" if rng.random() < 0.8 else None
        trace_id = span_id = None
        if rng.random() < 0.6:
            if span_in_trace == 0:
                trace, span_in_trace = trace + 1, rng.randrange(2, 15)
            span_in_trace -= 1
            trace_id, span_id = _hex("t", seed, trace), _hex("s", seed, i, size=16)
        deploy = (ts - start).days // 3
        commit = _hex("c", service, deploy, size=40) if rng.random() < 0.9 else None
        metadata = None
        if rng.random() < 0.5:
            parent = f"cluster-{rng.randrange(300)}"
            metadata = f'{{"parentResourceId":"{parent}","region":"eu-{rng.randrange(4)}"}}'
        if template.startswith(("GET ", "POST ")):
            metadata = request_metadata(requests, metadata)
        yield SeedRow(
            f"bench-{seed}-{i}",
            i // 5000,
            service,
            payload,
            severity,
            ts,
            resource,
            trace_id,
            span_id,
            commit,
            metadata,
        )


def secondary_indexes(cur: Cursor) -> list[str]:
    """The KEY / FULLTEXT KEY lines of service_logs' DDL, to drop before a bulk load."""
    cur.execute("SHOW CREATE TABLE service_logs")
    row = cur.fetchone()
    assert row is not None, "service_logs does not exist"
    return [
        line.strip().rstrip(",")
        for line in str(row[1]).splitlines()
        if re.match(r"\s*(FULLTEXT )?KEY ", line)
    ]


def index_name(line: str) -> str:
    """The name of the index a DDL line of `secondary_indexes` defines."""
    match = re.search(r"KEY `([^`]+)`", line)
    if match is None:
        raise ValueError(f"no index name in {line!r}")
    return match.group(1)


def _add_patterns(cur: Cursor, counts: Counter[CountKey]) -> None:
    """Add `counts` to the pattern rollups (sql/013) as `lms mon`'s batch does, then forget them."""
    for statement, values in tier_rows(counts):
        cur.executemany(statement, values)
    counts.clear()


def bulk_load(
    database: str,
    rows: int,
    seed: int = 6,
    chunk: int = 2000,
    progress: Callable[[str], None] | None = None,
    span: timedelta = SPAN,
) -> None:
    """Migrate `database`, then fill service_logs with `rows` rows over the `span` before END
    (indexes rebuilt after) and service_severity, volume_rollup, commit_rollup (sql/015),
    the pattern rollups (sql/013), log_patterns and the request rollups (sql/011) with their
    counts;
    `progress` hears how it goes."""
    say = progress or (lambda _line: None)
    settings = load_settings(_env_file=None, mysql_database=database)
    asyncio.run(Migrator(settings).migrate())
    conn = connect_blocking(settings, database, autocommit=False)
    started = time.monotonic()
    try:
        with conn.cursor() as cur:
            indexes = secondary_indexes(cur)
            names = [index_name(line) for line in indexes]
            cur.execute("ALTER TABLE service_logs " + ", ".join(f"DROP KEY `{n}`" for n in names))
            # Bulk rows are keyed by their message id, as rows stored before keys were.
            sql = (
                f"INSERT INTO service_logs (idempotency_key, pattern_id, {COLUMNS})"
                f" VALUES ({', '.join(['%s'] * 13)})"
            )
            batch: list[tuple[object, ...]] = []
            counts: dict[tuple[str, str], int] = {}
            hourly: Counter[RollupKey] = Counter()
            served = RequestRollup()
            by_pattern: Counter[CountKey] = Counter()
            templates: dict[int, tuple[str, datetime]] = {}
            for done, row in enumerate(generate(rows, seed, span), 1):
                hour = pattern_hour(row.timestamp)
                if by_pattern and hour != next(iter(by_pattern))[0]:
                    # The rows go in time order: an hour's counts are complete, added to
                    # the pattern rollups by the writer's own upserts.
                    _add_patterns(cur, by_pattern)
                pid, template = pattern_of(row.payload)
                templates.setdefault(pid, (template, row.timestamp))
                batch.append((row.message_id, pid, *row))
                key = (row.service_name, row.severity)
                counts[key] = counts.get(key, 0) + 1
                hourly[(hour_of(row.timestamp), row.service_name, row.severity, row.commit)] += 1
                by_pattern[(hour, row.service_name, row.severity, pid)] += 1
                request = request_of(row.metadata)
                if request is not None:
                    served.add(row.record(), request)
                if len(batch) == chunk:
                    cur.executemany(sql, batch)
                    batch.clear()
                    if done % 100_000 == 0:
                        conn.commit()
                        rate = done / (time.monotonic() - started)
                        say(f"  loaded {done:,} rows ({rate:,.0f}/s)")
            if batch:
                cur.executemany(sql, batch)
            _add_patterns(cur, by_pattern)
            cur.executemany(
                "INSERT INTO log_patterns (pattern_id, template, first_seen) VALUES (%s, %s, %s)",
                [(pid, text, seen) for pid, (text, seen) in sorted(templates.items())],
            )
            cur.executemany(
                "INSERT INTO service_severity (service_name, severity, `count`, created_at)"
                " VALUES (%s, %s, %s, %s)",
                [(s, v, c, END) for (s, v), c in sorted(counts.items())],
            )
            cur.executemany(INSERT_ROLLUP, rollup_rows(hourly))
            cur.executemany(UPSERT_COMMITS, commit_rows(hourly))
            for statement, values in served.statements():
                cur.executemany(statement, values)
            conn.commit()
            say(f"  rows in {time.monotonic() - started:.0f}s; rebuilding {len(indexes)} indexes")
            btree = [line for line in indexes if not line.startswith("FULLTEXT")]
            cur.execute("ALTER TABLE service_logs " + ", ".join(f"ADD {line}" for line in btree))
            for line in indexes:
                if line.startswith("FULLTEXT"):
                    cur.execute(f"ALTER TABLE service_logs ADD {line}")
            cur.execute("ANALYZE TABLE service_logs")
            cur.fetchall()
            cur.execute("ANALYZE TABLE service_severity")
            cur.fetchall()
        say(f"  loaded and indexed in {time.monotonic() - started:.0f}s")
    finally:
        conn.close()
