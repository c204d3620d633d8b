"""What top patterns (lms/domain/patterns.py, lms/store/patterns.py) cost the pipeline.

    .venv/bin/python bench/patterns.py                  # 50,000 rows, 3 runs
    .venv/bin/python bench/patterns.py --rows 20000 --runs 2

Two figures, measured in the same run on the same realistic rows (lms.devtools.seed's
generator, as bench/write_cost.py):
- masking: CPU microseconds per payload of `pattern_of` (template and id), the work the
  flusher adds per message;
- the write path: rows/s of BatchWriter.write_batch with patterns (the pattern_id column,
  the four pattern rollups of sql/013 and log_patterns, in the batch transaction) and without
  (BatchWriter(patterns=False)), on fresh databases at the newest schema, in transactions of
  `--batch` rows, runs interleaved so that drift of a shared machine hits both alike.
The rows are stamped in arrival order, 5,000 a second, as a live batch holds the last seconds
of traffic (the seed's own timestamps spread over weeks would make nearly every row its own
hourly rollup key). The seed draws each payload's service and severity at random, so one
template comes from every service at every severity: a batch then upserts about one row per
two logs into each tier keyed by service (and one per template into each tier without), a
worst case. `--owned` gives each template one service and one severity (the code that logs a
message lives in one service), the usual case: a row per (service, severity, template) seen
in the batch, in each tier.

The ratio of the two write rates, masking included, is what patterns cost a write-bound
`lms mon`; the masking share of lms mon's own CPU per message (docs/performance.md) is what
they cost a CPU-bound one.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.write_cost import drop_database, logs  # noqa: E402
from lms.domain import patterns as masking  # noqa: E402
from lms.settings import load_settings  # noqa: E402
from lms.store.migrations import Migrator  # noqa: E402
from lms.store.writer import BatchWriter, StoredLog  # noqa: E402

ARRIVALS = timedelta(microseconds=200)
"""Between two rows' timestamps: 5,000 logs a second, about lms mon's throughput."""


def arriving(rows: list[StoredLog]) -> list[StoredLog]:
    """The rows with timestamps of a live stream: in order, ARRIVALS apart."""
    start = datetime(2026, 12, 1, 10, 30)
    return [
        replace(row, record=replace(row.record, timestamp=start + i * ARRIVALS))
        for i, row in enumerate(rows)
    ]


def owned(rows: list[StoredLog], services: int = 48) -> list[StoredLog]:
    """Each template's logs from one service at one severity, both chosen by its id."""
    out = []
    for row in rows:
        pid = masking.pattern_of(row.record.payload)[0]
        record = replace(
            row.record,
            service_name=f"service-{pid % services:02d}",
            severity=("debug", "info", "warn", "error", "fatal")[pid % 5],
        )
        out.append(replace(row, record=record))
    return out


def masking_micros(payloads: list[str]) -> float:
    """CPU microseconds per payload of pattern_of, with a cold id cache as after a start."""
    masking._cached_id.cache_clear()
    began = time.process_time()
    for payload in payloads:
        masking.pattern_of(payload)
    return (time.process_time() - began) / len(payloads) * 1e6


async def write_rate(batches: list[list[StoredLog]], database: str, **parts: bool) -> float:
    """Rows/s of BatchWriter(**parts) writing `batches` into a fresh, migrated `database`."""
    settings = load_settings(_env_file=None, mysql_database=database)
    await Migrator(settings).migrate()
    writer = BatchWriter(settings, **parts)
    try:
        began = time.perf_counter()
        for batch in batches:
            await writer.write_batch(batch, [])
        elapsed = time.perf_counter() - began
    finally:
        await writer.close()
    return sum(map(len, batches)) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows per run (50,000)")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per transaction")
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode")
    parser.add_argument(
        "--owned", action="store_true", help="each template from one service at one severity"
    )
    parser.add_argument(
        "--prefix", default="lms_bench_patterns", help="databases: PREFIX_on/off, dropped after"
    )
    args = parser.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_]{1,50}", args.prefix):
        parser.error("--prefix: letters, digits and _ only")
    every = arriving(logs(args.rows))
    if args.owned:
        every = owned(every)
    payloads = [log.record.payload for log in every]
    batches = [every[i : i + args.batch] for i in range(0, len(every), args.batch)]
    templates = len({masking.template_of(p) for p in payloads})
    rates: dict[bool, list[float]] = {True: [], False: []}
    micros: list[float] = []
    for run in range(args.runs):
        micros.append(masking_micros(payloads))
        for patterns in (False, True):
            database = f"{args.prefix}_{'on' if patterns else 'off'}"
            drop_database(database)
            try:
                rate = asyncio.run(write_rate(batches, database, patterns=patterns))
            finally:
                drop_database(database)
            rates[patterns].append(rate)
            mode = "with patterns" if patterns else "without"
            print(f"  run {run + 1}, {mode}: {rate:,.0f} rows/s", flush=True)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    keys = statistics.mean(
        len({(r.record.service_name, r.record.severity, masking.template_of(r.record.payload))
             for r in batch})
        for batch in batches
    )  # fmt: skip
    print(
        f"\n{args.rows:,} rows ({templates:,} templates, {keys:,.0f} rows per batch in each"
        " rollup keyed by service)"
        f" in transactions of {args.batch:,}:"
    )
    print(f"  masking: {min(micros):.1f}-{max(micros):.1f} CPU us per payload")
    print(f"  write_batch without patterns: median {off:,.0f} rows/s")
    print(f"  write_batch with patterns:    median {on:,.0f} rows/s")
    print(f"  ratio: {on / off:.3f} ({(1 - on / off) * 100:+.1f}% fewer rows/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
