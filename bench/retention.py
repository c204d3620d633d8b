"""Retention benchmark: do query and analytics times depend on how many days are kept?

    .venv/bin/python bench/retention.py                     # 3 days against 12, 20,000 logs a day
    .venv/bin/python bench/retention.py --days 2 --per-day 10000 --runs 20

Loads two databases with the same logs per day (lms.devtools.seed, bulk), one holding DAYS
days and one 4 x DAYS, and times, through the real API app, the reads a user makes of recent
data (pages of GET /v1/logs with the common filters, full-text words, and the analytics of
the last 24 hours); the figure is each kind's p50 on 4 x DAYS over its p50 on DAYS, measured
in the same run, as the median over alternating rounds (small, large, small, large, ...; the
machine is shared: ratios, not absolute times). Then it measures the
bytes each log takes on disk (information_schema, data + indexes of service_logs over its
rows), and `lms retention` itself on the large database with RETENTION_DAYS=DAYS: how long
the chunked expiry takes per row deleted, and the query times after it. Prints everything;
docs/performance.md ("Retention: cost in the days kept") holds the figures of a run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.query import Values, _connect, _stamp, time_queries  # noqa: E402
from lms.devtools.seed import END, bulk_load  # noqa: E402
from lms.settings import load_settings  # noqa: E402
from lms.store.retention import Retention  # noqa: E402


def recent_cases(v: Values) -> dict[str, Callable[[random.Random], dict[str, Any]]]:
    """What a person asks of the recent logs: none of it should grow with older days."""
    day = {"from": _stamp(v.newest - timedelta(hours=24)), "to": _stamp(v.newest)}

    def hour(rng: random.Random) -> dict[str, str]:
        start = v.newest - timedelta(hours=rng.uniform(1, 24))
        return {"from": _stamp(start), "to": _stamp(start + timedelta(hours=1))}

    return {
        "logs: no filter": lambda r: {},
        "logs: service": lambda r: {"service": r.choice(v.services)},
        "logs: severity=error": lambda r: {"severity": "error"},
        "logs: service + severity": lambda r: {"service": r.choice(v.services), "severity": "info"},
        "logs: 1 h of the last day": hour,
        "logs: trace_id": lambda r: {"trace_id": r.choice(v.traces)},
        "logs: q word (common)": lambda r: {"q": r.choice(["timeout", "declined"])},
        "logs: q word (rare)": lambda r: {"q": r.choice(["deadlock", "OutOfMemoryError"])},
        "logs: q rare + service": lambda r: {
            "q": r.choice(["deadlock", "OutOfMemoryError"]),
            "service": r.choice(v.services),
        },
        "volume: last 24 h": lambda r: {"_path": "/v1/analytics/volume", **day},
        "volume: last 24 h, service": lambda r: {
            "_path": "/v1/analytics/volume",
            "service": r.choice(v.services),
            **day,
        },
        "errors: last 24 h": lambda r: {"_path": "/v1/analytics/errors", **day},
        "services (totals)": lambda r: {"_path": "/v1/services"},
    }


def bytes_per_log(database: str) -> tuple[int, int, float]:
    """(rows, bytes of data + indexes, bytes per row) of service_logs, after ANALYZE TABLE
    so that information_schema's row estimate is fresh (InnoDB's figures are estimates)."""
    conn = _connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("ANALYZE TABLE service_logs")
            cur.fetchall()
            cur.execute("SELECT COUNT(*) FROM service_logs")
            rows = int(cur.fetchone()[0])
            cur.execute(
                "SELECT data_length + index_length FROM information_schema.tables"
                " WHERE table_schema = %s AND table_name = 'service_logs'",
                (database,),
            )
            size = int(cur.fetchone()[0])
        return rows, size, size / rows
    finally:
        conn.close()


def drop(database: str) -> None:
    conn = _connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=3, help="days of the small database (3)")
    parser.add_argument("--per-day", type=int, default=20_000, help="logs a day (20,000)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per kind (20)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    sizes = (args.days, 4 * args.days)
    names = {days: f"lms_bench_retention_{days}d" for days in sizes}
    timings: dict[int, dict[str, list[float]]] = {days: {} for days in sizes}
    try:
        for days in sizes:
            drop(names[days])
            print(f"loading {days * args.per_day:,} logs over {days} days", flush=True)
            bulk_load(names[days], days * args.per_day, span=timedelta(days=days))
            rows, size, per_row = bytes_per_log(names[days])
            print(f"  service_logs: {rows:,} rows, {size / 2**20:.1f} MiB, {per_row:.0f} B/log")
        for round_ in range(1, args.rounds + 1):  # alternating, so drift hits both alike
            for days in sizes:
                print(f"round {round_}, {days} days", flush=True)
                results = asyncio.run(time_queries(names[days], args.runs, None, recent_cases))
                for name, p50, _p95, _max, _rows in results:
                    timings[days].setdefault(name, []).append(p50)
        small, large = sizes
        print(f"\nmedian over {args.rounds} rounds of p50 (ms), {small} and {large} days kept:")
        for name, values in timings[small].items():
            low, high = statistics.median(values), statistics.median(timings[large][name])
            ratios = sorted(b / a for a, b in zip(values, timings[large][name], strict=True))
            spread = f"rounds x{ratios[0]:.2f}-{ratios[-1]:.2f}"
            print(f"  {name:<30} {low:7.1f} {high:7.1f}  x{high / low:.2f}  ({spread})")

        settings = load_settings(_env_file=None, mysql_database=names[large], retention_days=small)
        now = END + timedelta(hours=1)  # the seeded data ends at END
        rows_before = bytes_per_log(names[large])[0]
        began = time.monotonic()

        async def expire() -> int:
            async with Retention(settings) as retention:
                report = await retention.run(now=now)
            return report.deleted["service_logs"]

        deleted = asyncio.run(expire())
        seconds = time.monotonic() - began
        print(
            f"\nlms retention (RETENTION_DAYS={small}) on {rows_before:,} logs: {deleted:,}"
            f" deleted in {seconds:.1f} s ({deleted / seconds:,.0f} logs/s,"
            f" chunks of {settings.retention_chunk})"
        )
        after = asyncio.run(time_queries(names[large], args.runs, None, recent_cases))
        print("p50 (ms) after it, against the database that only ever held those days:")
        for name, p50, _p95, _max, _rows in after:
            print(f"  {name:<30} {p50:7.1f} vs {statistics.median(timings[small][name]):7.1f}")
    finally:
        if not args.keep:
            for name in names.values():
                drop(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
