"""CPU per message of each step of `lms mon`'s hot path, in this process, on the messages of
the pipeline benchmark (bench/run.py's pool: payloads of 50-2,000 characters).

    .venv/bin/python bench/hotpath.py               # 20,000 messages, best of 3
    .venv/bin/python bench/hotpath.py --messages 5000 --runs 5

CPU time (time.process_time) per message, the best of --runs passes, so a neighbour's load on
a shared machine inflates it least. Where the step has an alternative, both are measured in
the same pass: the driver's own escaping against the writer's (lms.store.connection), and one
Histogram.observe per message against lms.ops.metrics.observe_many. A figure for the whole
process, gRPC and the event loop included, is bench/run.py's CPU per 1,000 messages.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiomysql
from prometheus_client import CollectorRegistry, Histogram
from pymysql.converters import escape_item, escape_string

from bench.pipeline.common import make_pool
from lms.domain import patterns
from lms.domain.record import LogRecord, parse_message
from lms.ops.metrics import PUBLISH_TO_COMMIT, observe_many
from lms.store.connection import FastEscapeCursor
from lms.store.writer import StoredLog, _log_rows


class _Connection:
    """What the cursors' escaping asks of a connection, as aiomysql's Connection does it."""

    server_status = 0

    def escape(self, value: object) -> str:
        if isinstance(value, str):
            return "'" + escape_string(value) + "'"
        return str(escape_item(value, "utf8mb4"))


def per_message(step: Callable[[], object], count: int, runs: int) -> float:
    """Best CPU microseconds per message of `step` (which handles `count` messages)."""
    best = float("inf")
    for _ in range(runs):
        began = time.process_time()
        step()
        best = min(best, time.process_time() - began)
    return best / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages (20,000)")
    parser.add_argument("--runs", type=int, default=3, help="passes; the best counts (3)")
    args = parser.parse_args()
    bodies = [body for body, _key in make_pool(args.messages, seed=1)]
    records = [parse_message(body) for body in bodies]
    assert all(isinstance(r, LogRecord) for r in records)
    logs = [StoredLog(str(i), r) for i, r in enumerate(records) if isinstance(r, LogRecord)]
    found = [patterns.pattern_of(log.record.payload) for log in logs]
    rows = list(_log_rows(logs, 1, found))
    conn = _Connection()
    cursor = FastEscapeCursor.__new__(FastEscapeCursor)
    lags = [0.5 + (i % 1000) / 100 for i in range(len(bodies))]
    registry = CollectorRegistry()
    lag = Histogram("lag", "lag", buckets=PUBLISH_TO_COMMIT._upper_bounds[:-1], registry=registry)
    n, runs = len(bodies), args.runs

    def cold_masking() -> None:
        patterns._cached_id.cache_clear()
        patterns._masked_token.cache_clear()
        for log in logs:
            patterns.pattern_of(log.record.payload)

    steps: list[tuple[str, Callable[[], object]]] = [
        ("parse_message (JSON, every rule)", lambda: [*map(parse_message, bodies)]),
        ("pattern_of (template and id, caches cold)", cold_masking),
        ("row tuples (_log_rows)", lambda: list(_log_rows(logs, 1, found))),
        (
            "escaping a row: the driver's (aiomysql Cursor)",
            lambda: [aiomysql.Cursor._escape_args(cursor, r, conn) for r in rows],
        ),
        (
            "escaping a row: the writer's (FastEscapeCursor)",
            lambda: [cursor._escape_args(r, conn) for r in rows],
        ),
        ("lag histogram: observe() per message", lambda: [*map(lag.observe, lags)]),
        ("lag histogram: observe_many per batch", lambda: observe_many(lag, lags)),
    ]
    figures = [(name, per_message(step, n, runs)) for name, step in steps]
    mean = sum(len(log.record.payload) for log in logs) / len(logs)
    print(f"{n:,} messages, payloads of {mean:,.0f} characters on average; best of {runs}:")
    width = max(len(name) for name, _ in figures)
    for name, micros in figures:
        print(f"  {name:<{width}}  {micros:6.2f} CPU us per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
