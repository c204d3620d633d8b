"""Query benchmark: load N realistic logs, then time every filter of GET /v1/logs, and of
the analytics (GET /v1/analytics/volume, /errors, /patterns and /requests).

    .venv/bin/python bench/query.py                  # 5,000,000 rows into lms_bench_query
    .venv/bin/python bench/query.py --rows 1000000   # smaller
    .venv/bin/python bench/query.py --reuse          # keep the loaded table, only time again
    .venv/bin/python bench/query.py --pool-mb 4096   # also time with a 4 GB buffer pool
    .venv/bin/python bench/query.py --reuse --part analytics   # only the analytics
    .venv/bin/python bench/query.py --reuse --part explorer    # the web UI's requests

Loading is bulk, not through Pub/Sub, and the rows are realistic: lms.devtools.seed (also
used by tests/test_query_explain.py) says how.

Each query kind runs --runs times (default 30) with random realistic values, limit=100,
through the real API app (FastAPI in-process over httpx, so parsing, SQL and JSON all
count), after one warm-up run. p50/p95 per kind are printed and written to
docs/performance.md, one section per part of PARTS (--no-write to skip).

A kind is an entry of a part's table: a name and a function of a random generator giving the
request's parameters (`_path` for another endpoint than GET /v1/logs), or a list of such
requests that a page sends at once (the explorer's histogram and first page), timed together
until the last answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lms.api.app import create_app  # noqa: E402
from lms.devtools.database import connect_blocking  # noqa: E402
from lms.devtools.seed import bulk_load, index_name, secondary_indexes  # noqa: E402
from lms.settings import load_settings  # noqa: E402


def _connect(database: str | None = None) -> pymysql.Connection:
    return connect_blocking(load_settings(_env_file=None), database, autocommit=False)


# --- timing ------------------------------------------------------------------------------


@dataclass
class Values:
    """Real values of the loaded table to query with."""

    services: list[str]
    resources: list[str]
    traces: list[str]
    spans: list[str]
    commits: list[str]
    parents: list[str]
    oldest: datetime
    newest: datetime


def sample_values(database: str) -> Values:
    conn = _connect(database)
    try:
        with conn.cursor() as cur:

            def column(sql: str) -> list[str]:
                cur.execute(sql)
                return [row[0] for row in cur.fetchall()]

            cur.execute("SELECT MIN(`timestamp`), MAX(`timestamp`) FROM service_logs")
            oldest, newest = cur.fetchone()
            sample = "SELECT {c} FROM service_logs WHERE id IN ({ids}) AND {c} IS NOT NULL"
            cur.execute("SELECT MAX(id) FROM service_logs")
            top = cur.fetchone()[0]
            rng = random.Random(1)
            ids = ", ".join(str(rng.randrange(1, top + 1)) for _ in range(400))

            def pick(col: str) -> list[str]:
                return column(sample.format(c=col, ids=ids))

            return Values(
                services=column("SELECT DISTINCT service_name FROM service_severity"),
                resources=pick("resource_id"),
                traces=pick("trace_id"),
                spans=pick("span_id"),
                commits=pick("`commit`"),
                parents=pick("parent_resource_id"),
                oldest=oldest,
                newest=newest,
            )
    finally:
        conn.close()


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Request = dict[str, Any]
Case = Callable[[random.Random], Request | list[Request]]
"""A query kind: from a random generator, one request's parameters, or the requests a page
sends at once."""


def _parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def cases(v: Values) -> dict[str, Case]:
    def window(rng: random.Random, hours: float = 1) -> dict[str, str]:
        span = (v.newest - v.oldest).total_seconds() - hours * 3600
        start = v.oldest + timedelta(seconds=rng.uniform(0, span))
        return {"from": _stamp(start), "to": _stamp(start + timedelta(hours=hours))}

    return {
        "no filter": lambda r: {},
        "service": lambda r: {"service": r.choice(v.services)},
        "severity=error": lambda r: {"severity": "error"},
        "severity=error,fatal": lambda r: {"severity": ["error", "fatal"]},
        "severity=fatal": lambda r: {"severity": "fatal"},
        "from/to (1 h)": lambda r: window(r),
        "from/to (1 day)": lambda r: window(r, 24),
        "from only (last 6 h)": lambda r: {"from": _stamp(v.newest - timedelta(hours=6))},
        "to only (older half)": lambda r: {"to": _stamp(v.oldest + (v.newest - v.oldest) / 2)},
        "resource_id": lambda r: {"resource_id": r.choice(v.resources)},
        "trace_id": lambda r: {"trace_id": r.choice(v.traces)},
        "span_id": lambda r: {"span_id": r.choice(v.spans)},
        "commit": lambda r: {"commit": r.choice(v.commits)},
        "parent_resource_id": lambda r: {"parent_resource_id": r.choice(v.parents)},
        "q word (common)": lambda r: {"q": r.choice(["timeout", "declined", "slow"])},
        "q word (rare)": lambda r: {"q": r.choice(["deadlock", "OutOfMemoryError"])},
        "q phrase": lambda r: {"q": r.choice(['"Failed to connect"', '"connection reset"'])},
        "service + severity": lambda r: {"service": r.choice(v.services), "severity": "error"},
        "service + 2 severities + from/to": lambda r: {
            "service": r.choice(v.services),
            "severity": ["warn", "error"],
            **window(r, 24),
        },
        "resource_id + severity": lambda r: {
            "resource_id": r.choice(v.resources),
            "severity": ["error", "fatal"],
        },
        "trace_id + service": lambda r: {
            "trace_id": r.choice(v.traces),
            "service": r.choice(v.services),
        },
        "commit + severity": lambda r: {"commit": r.choice(v.commits), "severity": "warn"},
        "parent + service": lambda r: {
            "parent_resource_id": r.choice(v.parents),
            "service": r.choice(v.services),
        },
        "q + service": lambda r: {"q": "timeout", "service": r.choice(v.services)},
        "q rare + service": lambda r: {
            "q": r.choice(["deadlock", "OutOfMemoryError"]),
            "service": r.choice(v.services),
        },
        "q + resource_id": lambda r: {"q": "slow", "resource_id": r.choice(v.resources)},
        "q + parent": lambda r: {"q": "timeout", "parent_resource_id": r.choice(v.parents)},
        "q phrase + severity + from/to": lambda r: {
            "q": '"Failed to connect"',
            "severity": ["error", "fatal"],
            **window(r, 24),
        },
        "page 2 (cursor) of service": lambda r: {"service": r.choice(v.services), "_page": 2},
    }


def analytics_cases(v: Values) -> dict[str, Case]:
    """GET /v1/analytics/volume, /errors and /requests over the whole table (hourly buckets,
    the range not on the hour, so the partial edge hours are counted in service_logs too), and
    /patterns over a day and over the whole range."""
    whole = {"from": _stamp(v.oldest), "to": _stamp(v.newest + timedelta(seconds=1))}

    def day(rng: random.Random) -> dict[str, str]:
        start = v.oldest + timedelta(days=rng.uniform(0, (v.newest - v.oldest).days - 1))
        return {"from": _stamp(start), "to": _stamp(start + timedelta(days=1))}

    def volume(**params: Any) -> dict[str, Any]:
        return {"_path": "/v1/analytics/volume", **whole, **params}

    def errors(**params: Any) -> dict[str, Any]:
        return {"_path": "/v1/analytics/errors", **whole, **params}

    def patterns(**params: Any) -> dict[str, Any]:
        return {"_path": "/v1/analytics/patterns", **params}

    def requests(**params: Any) -> dict[str, Any]:
        return {"_path": "/v1/analytics/requests", **whole, **params}

    return {
        "volume: no filter": lambda r: volume(),
        "volume: service": lambda r: volume(service=r.choice(v.services)),
        "volume: severity=error,fatal": lambda r: volume(severity=["error", "fatal"]),
        "volume: service + severity": lambda r: volume(
            service=r.choice(v.services), severity="warn"
        ),
        "volume: resource_id": lambda r: volume(resource_id=r.choice(v.resources)),
        "volume: trace_id": lambda r: volume(trace_id=r.choice(v.traces)),
        "volume: span_id": lambda r: volume(span_id=r.choice(v.spans)),
        "volume: commit": lambda r: volume(commit=r.choice(v.commits)),
        "volume: parent_resource_id": lambda r: volume(parent_resource_id=r.choice(v.parents)),
        "volume: parent + service": lambda r: volume(
            parent_resource_id=r.choice(v.parents), service=r.choice(v.services)
        ),
        "volume: day buckets, Europe/Berlin": lambda r: volume(bucket="day", tz="Europe/Berlin"),
        "volume: compare=previous": lambda r: volume(compare="previous"),
        "volume: minute buckets, 1 day": lambda r: volume(bucket="minute", **day(r)),
        "volume: q word (rare)": lambda r: volume(q=r.choice(["deadlock", "OutOfMemoryError"])),
        "volume: q word (common)": lambda r: volume(q=r.choice(["timeout", "declined"])),
        "errors: top 10 services": lambda r: errors(),
        "errors: one service": lambda r: errors(service=r.choice(v.services)),
        "errors: compare=previous": lambda r: errors(compare="previous"),
        "errors: 1 day, all services": lambda r: errors(top=48, **day(r)),
        "errors: commit": lambda r: errors(commit=r.choice(v.commits)),
        "patterns: 1 day": lambda r: patterns(**day(r)),
        "patterns: 1 day, one service": lambda r: patterns(service=r.choice(v.services), **day(r)),
        "patterns: whole range": lambda r: patterns(**whole),
        "patterns: whole range, error+fatal": lambda r: patterns(
            severity=["error", "fatal"], **whole
        ),
        "patterns: whole range, one service": lambda r: patterns(
            service=r.choice(v.services), **whole
        ),
        "requests: whole range": lambda r: requests(),
        "requests: whole range, hourly": lambda r: requests(bucket="hour"),
        "requests: one service": lambda r: requests(service=r.choice(v.services)),
        "requests: one route": lambda r: requests(route="/api/v1/orders/{id}", method="GET"),
        "requests: compare=previous, day buckets": lambda r: requests(
            compare="previous", bucket="day"
        ),
        "requests: 1 day": lambda r: requests(**day(r)),
    }


def _bucket_for(since: datetime, until: datetime) -> str:
    """The histogram's bucket for a range, as the web UI picks it (ui/src/time.ts, bucketFor)."""
    span = until - since
    if span <= timedelta(hours=6):
        return "minute"
    if span <= timedelta(days=14):
        return "hour"
    return "day" if span <= timedelta(days=366) else "week"


def explorer_cases(v: Values) -> dict[str, Case]:
    """What the web UI's explorer asks for each filter without `q` (issue 17, "Speed"): the
    volume histogram of the range (both ends given, the bucket chosen from its length) and the
    first page of logs, sent at once and timed until both are back; and the facets panel."""
    kinds = {
        name: make
        for name, make in cases(v).items()
        if not name.startswith("q ") and " q " not in name and "_page" not in make(random.Random(0))
    }

    def histogram(params: dict[str, Any]) -> dict[str, Any]:
        since = params.get("from", _stamp(v.oldest))
        until = params.get("to", _stamp(v.newest + timedelta(seconds=1)))
        bucket = _bucket_for(_parse_stamp(since), _parse_stamp(until))
        return {**params, "_path": "/v1/analytics/volume", "from": since, "to": until,
                "bucket": bucket}  # fmt: skip

    def pair(make: Case) -> Case:
        def both(rng: random.Random) -> list[dict[str, Any]]:
            params = make(rng)
            assert isinstance(params, dict)
            return [histogram(params), params]

        return both

    def facets(make: Case) -> Case:
        def one(rng: random.Random) -> dict[str, Any]:
            params = make(rng)
            assert isinstance(params, dict)
            return {**params, "_path": "/v1/logs/facets"}

        return one

    table: dict[str, Case] = {}
    for name, make in kinds.items():
        table[f"histogram + page: {name}"] = pair(make)
    for name, make in kinds.items():
        table[f"facets: {name}"] = facets(make)
    return table


def _size(body: dict[str, Any]) -> int:
    """What an answer holds: logs, buckets, services, patterns, routes or facet values."""
    for key in ("logs", "buckets", "services", "patterns", "routes"):
        if key in body:
            return len(body[key])
    return sum(len(values) for values in body["facets"].values())


async def time_queries(
    database: str, runs: int, only: str | None, kinds: Callable[[Values], dict[str, Case]]
) -> list[tuple[str, float, float, float, int]]:
    settings = load_settings(
        _env_file=None, mysql_database=database, api_query_timeout=60, api_ingest=False
    )
    values = sample_values(database)
    app = create_app(settings)
    results = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c,
    ):

        async def one(params: Request) -> int:
            params = dict(params)
            pages = params.pop("_page", 1)
            path = params.pop("_path", None)
            if path is not None:
                response = await c.get(path, params=params)
                response.raise_for_status()
                return _size(response.json())
            cursor = None
            for _ in range(pages):
                query = {**params, "limit": 100, **({"cursor": cursor} if cursor else {})}
                response = await c.get("/v1/logs", params=query)
                response.raise_for_status()
                body = response.json()
                cursor = body["next_cursor"]
            return len(body["logs"])

        async def get(requests: Request | list[Request]) -> tuple[float, int]:
            """The time until every request of the kind is answered (a page's requests are
            sent at once), and the size of the last one's answer; a cursor's earlier pages
            are not timed."""
            together = requests if isinstance(requests, list) else [requests]
            pages = [r for r in together if r.get("_page", 1) > 1]
            for params in pages:  # read up to the timed page first
                await one({**params, "_page": params["_page"] - 1})
            began = time.perf_counter()
            sizes = await asyncio.gather(*(one(r) for r in together))
            return time.perf_counter() - began, sizes[-1]

        for name, make in kinds(values).items():
            if only and not re.search(only, name):
                continue
            rng = random.Random(name)
            await get(make(random.Random(0)))  # warm-up
            times, sizes = [], []
            for _ in range(runs):
                elapsed, size = await get(make(rng))
                times.append(elapsed * 1000)
                sizes.append(size)
            times.sort()
            p50 = statistics.median(times)
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            results.append((name, p50, p95, times[-1], round(statistics.mean(sizes))))
            strategies = dict(app.state.reader.strategies)
            app.state.reader.strategies.clear()
            print(f"  {name:<34} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  max {times[-1]:8.1f} ms"
                  f"  rows {results[-1][4]:>4}  {strategies or ''}", flush=True)  # fmt: skip
    return results


@dataclass(frozen=True)
class Part:
    """A part of the benchmark (--part NAME): its query kinds and its report section."""

    cases: Callable[[Values], dict[str, Case]]
    heading: str
    target_ms: float
    what: str
    timing: str = field(default="")
    """What the progress line says is being timed."""
    baseline: str | None = None
    """The kind every other is compared with (p95 over its p95), measured in the same run:
    a target that does not move with the machine."""
    max_ratio: float = 4.0
    untargeted: str | None = None
    """A regex of the kinds the target does not cover, reported beside it."""
    untargeted_why: str = ""


PARTS: dict[str, Part] = {
    "logs": Part(
        cases,
        "Query performance",
        50,
        "`limit=100`",
        "GET /v1/logs, limit=100",
        baseline="no filter",
    ),
    "analytics": Part(
        analytics_cases,
        "Analytics performance",
        300,
        "the whole table's range in hourly buckets unless named (requests: the default"
        " bucket, daily for a month); rows: buckets (volume), services (errors), patterns or"
        " routes (requests) in the answer",
        "GET /v1/analytics/volume, /errors, /patterns and /requests",
        untargeted=r"^volume: (q |minute)",
        untargeted_why="issue 16's target names volume without `q` in hourly buckets; with `q`"
        " it is exact and `Server-Timing` reports its time",
    ),
    "explorer": Part(
        explorer_cases,
        "Explorer performance",
        300,
        "for each filter of GET /v1/logs without `q`: the volume histogram of its range"
        " (the whole table's when it has none; minute buckets up to 6 h, hourly up to 14"
        " days, daily up to 366, as the UI picks them) and the first page (`limit=100`)"
        " sent at once, timed until both are back"
        " (rows: the page's logs); and GET /v1/logs/facets with the default fields"
        " (rows: values in the answer)",
        "the explorer's histogram + first page, and its facets",
    ),
}
"""The parts, in the order `--part all` runs them; `logs` is also the one timed again with
--pool-mb."""


def ratios_base(results: list[Any], baseline: str | None) -> float:
    """The baseline kind's p95 in `results` (0 when it was not timed)."""
    return next((p95 for name, _p50, p95, *_ in results if name == baseline), 0.0)


def p95_ratios(results: list[Any], baseline: str | None) -> dict[str, float]:
    """Each kind's p95 over the baseline kind's p95; empty without a timed baseline."""
    base = ratios_base(results, baseline)
    return {name: p95 / base for name, _p50, p95, *_ in results} if base else {}


def print_ratios(results: list[Any], part: Part) -> None:
    """The machine-independent verdict of a part with a baseline, on the console."""
    ratios = p95_ratios(results, part.baseline)
    if not ratios:
        return
    print(f"p95 / {part.baseline} (target <= {part.max_ratio:g}):", flush=True)
    for name, ratio in ratios.items():
        verdict = "" if ratio <= part.max_ratio else "  OVER"
        print(f"  {name:<34} {ratio:5.1f}x{verdict}", flush=True)


def write_report(
    path: Path,
    rows: int,
    load_seconds: float | None,
    results: list[Any],
    heading: str = "Query performance",
    command: str = "",
    target_ms: float = 50,
    what: str = "`limit=100`",
    runs: int = 30,
    baseline: str | None = None,
    max_ratio: float = 4.0,
    untargeted: str | None = None,
    untargeted_why: str = "",
) -> None:
    """Replace the section `heading` of the report (or append it)."""
    conn = _connect()
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION(), @@innodb_buffer_pool_size")
        version, pool = cur.fetchone()
    conn.close()
    outside = [n for n, *_ in results if untargeted is not None and re.search(untargeted, n)]
    over = [name for name, _p50, p95, *_ in results if p95 >= target_ms and name not in outside]
    lines = [
        f"## {heading}",
        "",
        f"`{command or f'bench/query.py --rows {rows}'}` (`make bench-query`),"
        f" {datetime.now():%Y-%m-%d %H:%M}: {rows:,} rows in `service_logs`, MariaDB {version},"
        f" innodb_buffer_pool_size {int(pool) // 2**20:,} MB, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}.",
        f"Each query kind ran {runs} times with random real values (plus one warm-up), "
        f"{what}, timed through the API app in-process (validation, SQL, JSON).",
    ]
    if load_seconds is not None:
        lines.append(
            f"Bulk load (multi-row INSERTs, indexes rebuilt afterwards): {load_seconds:.0f} s."
        )
    ratios = p95_ratios(results, baseline)
    ratio_head = f" p95 / {baseline} |" if ratios else ""
    lines += [
        "",
        "| query | p50 ms | p95 ms | max ms | rows |" + ratio_head,
        "|---|---:|---:|---:|---:|" + ("---:|" if ratios else ""),
        *(f"| {n} | {a:.1f} | {b:.1f} | {c:.1f} | {size} |"
          + (f" {ratios[n]:.1f} |" if ratios else "") for n, a, b, c, size in results),
        "",
        f"Target p95 < {target_ms:g} ms: "
        + (f"missed by {', '.join(over)}." if over else "met by every query")
        + ("" if over else " it covers." if outside else ".")
        + (f" Not covered: {', '.join(outside)} ({untargeted_why})." if outside else ""),
        "",
    ]  # fmt: skip
    if ratios:
        above = [name for name, ratio in ratios.items() if ratio > max_ratio]
        lines += [
            f"Target, machine-independent: every kind's p95 at most {max_ratio:g}x"
            f" {baseline}'s of the same run ({max_ratio * ratios_base(results, baseline):.1f}"
            " ms here): " + (f"missed by {', '.join(above)}." if above else "met by every query."),
            "",
        ]
    section = "\n".join(lines)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n\n"
    pattern = re.compile(rf"## {re.escape(heading)}\n.*?(?=\n## |\Z)", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section.rstrip("\n") + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")


def set_buffer_pool(size: int, timeout: float = 300.0) -> None:
    """Resize InnoDB's buffer pool (dynamic in MariaDB 10.2+ and MySQL 5.7+) and wait until
    its pages are there (the resize may run in the background after SET GLOBAL returns)."""
    conn = _connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL innodb_buffer_pool_size = %s", (size,))
            cur.execute("SELECT @@innodb_page_size")
            page = int(cur.fetchone()[0])
            deadline = time.monotonic() + timeout
            while True:
                cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_total'")
                have = int(cur.fetchone()[1]) * page
                if abs(have - size) < size * 0.05:  # a few pages go to the pool's own use
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"buffer pool has {have} bytes, not the {size} asked for")
                time.sleep(0.2)
    finally:
        conn.close()


def warm(database: str) -> None:
    """Read the table and each of its B-tree indexes once, as a serving database has them."""
    conn = _connect(database)
    try:
        with conn.cursor() as cur:
            names = ["PRIMARY"] + [
                index_name(line)
                for line in secondary_indexes(cur)
                if not line.startswith("FULLTEXT")
            ]
            for name in names:
                cur.execute(f"SELECT COUNT(*) FROM service_logs FORCE INDEX (`{name}`)")
                cur.fetchall()
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows to load (5,000,000)")
    parser.add_argument("--database", default="lms_bench_query", help="database (recreated)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per query kind")
    parser.add_argument("--reuse", action="store_true", help="keep the loaded database")
    parser.add_argument("--keep", action="store_true", help="do not drop the database after")
    parser.add_argument("--no-write", action="store_true", help="do not write the report")
    parser.add_argument("--only", metavar="REGEX", help="time only the query kinds matching")
    parser.add_argument(
        "--part",
        choices=["all", *PARTS],
        default="all",
        help="time GET /v1/logs, the analytics endpoints, the web UI explorer's requests, or"
        " all of them (default)",
    )
    parser.add_argument("--load-only", action="store_true", help="load (and keep), no timing")
    parser.add_argument(
        "--loaded-in", type=float, metavar="S", help="with --reuse: the load time to report"
    )
    parser.add_argument(
        "--report", type=Path, default=ROOT / "docs" / "performance.md", help="report file"
    )
    parser.add_argument(
        "--pool-mb",
        type=int,
        metavar="MB",
        help="time again with innodb_buffer_pool_size at MB, the table read into it first"
        " (the server's size is restored after; needs SUPER or SYSTEM_VARIABLES_ADMIN)",
    )
    args = parser.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", args.database):
        parser.error("--database: letters, digits and _ only")
    load_seconds = args.loaded_in
    admin = _connect()
    if not args.reuse:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{args.database}`")
        print(f"loading {args.rows:,} rows into {args.database}", flush=True)
        began = time.monotonic()
        bulk_load(args.database, args.rows, progress=lambda line: print(line, flush=True))
        load_seconds = time.monotonic() - began
        print(f"loaded in {load_seconds:.0f}s", flush=True)
        if args.load_only:
            return 0
    for name, part in PARTS.items():
        if args.part not in ("all", name):
            continue
        print(f"timing {part.timing}", flush=True)
        results = asyncio.run(time_queries(args.database, args.runs, args.only, part.cases))
        print_ratios(results, part)
        if not args.no_write:
            write_report(
                args.report,
                args.rows,
                load_seconds,
                results,
                heading=part.heading,
                command=f"bench/query.py --rows {args.rows}"
                + ("" if name == "logs" else f" --part {name}"),
                target_ms=part.target_ms,
                runs=args.runs,
                what=part.what,
                baseline=part.baseline,
                max_ratio=part.max_ratio,
                untargeted=part.untargeted,
                untargeted_why=part.untargeted_why,
            )
    if args.pool_mb:
        with admin.cursor() as cur:
            cur.execute("SELECT @@innodb_buffer_pool_size")
            (original,) = cur.fetchone()
        try:
            set_buffer_pool(args.pool_mb * 2**20)
            print(f"buffer pool {args.pool_mb:,} MB; reading the table into it", flush=True)
            warm(args.database)
            print(f"timing {PARTS['logs'].timing}", flush=True)
            results = asyncio.run(time_queries(args.database, args.runs, args.only, cases))
            print_ratios(results, PARTS["logs"])
            if not args.no_write:  # while the pool is the one timed: the report reads it
                write_report(
                    args.report,
                    args.rows,
                    None,
                    results,
                    heading=f"Query performance, {args.pool_mb:,} MB buffer pool",
                    command=f"bench/query.py --rows {args.rows} --pool-mb {args.pool_mb}",
                    baseline=PARTS["logs"].baseline,
                )
        finally:
            set_buffer_pool(int(original))
    if not args.keep and not args.reuse:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{args.database}`")
    admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
