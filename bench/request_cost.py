"""What the request rollups (sql/011, lms/store/request_rollup.py), or commit_rollup
(sql/015, lms/store/volume_rollup.py), cost the write path.

    .venv/bin/python bench/request_cost.py                  # 50,000 rows, 3 runs
    .venv/bin/python bench/request_cost.py --all-requests   # every row a request log
    .venv/bin/python bench/request_cost.py --rollup commits # commit_rollup instead

Rows/s of BatchWriter.write_batch with the request rollups and without
(BatchWriter(requests=False); with `--rollup commits`, BatchWriter(commits=False)), on the
same realistic rows (lms.devtools.seed's generator: about a fifth are request logs with
metadata.http and a user, nine tenths carry a commit), stamped as a live stream
(bench/patterns.py's `arriving`), on fresh databases at the newest schema, in transactions of
`--batch` rows, runs interleaved so that drift of a shared machine hits both alike.
`--all-requests` makes every row a request log, the dear case.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.patterns import arriving, write_rate  # noqa: E402
from bench.write_cost import drop_database, logs  # noqa: E402
from lms.devtools.seed import request_metadata  # noqa: E402
from lms.domain.requests import request_of  # noqa: E402
from lms.store.writer import StoredLog  # noqa: E402


def all_requests(rows: list[StoredLog]) -> list[StoredLog]:
    """Every row a request log (its other metadata kept)."""
    rng = random.Random(4)
    out = []
    for row in rows:
        metadata = request_metadata(rng, row.record.metadata)
        out.append(replace(row, record=replace(row.record, metadata=metadata)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows per run (50,000)")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per transaction")
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode")
    parser.add_argument("--all-requests", action="store_true", help="every row a request log")
    parser.add_argument(
        "--rollup", choices=("requests", "commits"), default="requests", help="what to turn off"
    )
    parser.add_argument(
        "--prefix", default="lms_bench_requests", help="databases: PREFIX_on/off, dropped after"
    )
    args = parser.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_]{1,50}", args.prefix):
        parser.error("--prefix: letters, digits and _ only")
    every = arriving(logs(args.rows))
    if args.all_requests:
        every = all_requests(every)
    share = sum(request_of(row.record.metadata) is not None for row in every) / len(every)
    batches = [every[i : i + args.batch] for i in range(0, len(every), args.batch)]
    rates: dict[bool, list[float]] = {True: [], False: []}
    name = "request rollups" if args.rollup == "requests" else "commit_rollup"
    for run in range(args.runs):
        for enabled in (False, True):
            database = f"{args.prefix}_{'on' if enabled else 'off'}"
            drop_database(database)
            try:
                rate = asyncio.run(write_rate(batches, database, **{args.rollup: enabled}))
            finally:
                drop_database(database)
            rates[enabled].append(rate)
            mode = f"with {name}" if enabled else "without"
            print(f"  run {run + 1}, {mode}: {rate:,.0f} rows/s", flush=True)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    commits = sum(row.record.commit is not None for row in every) / len(every)
    print(
        f"\n{args.rows:,} rows ({share:.0%} requests, {commits:.0%} with a commit)"
        f" in transactions of {args.batch:,}:"
    )
    print(f"  write_batch without {name}: median {off:,.0f} rows/s")
    print(f"  write_batch with {name}:    median {on:,.0f} rows/s")
    print(f"  ratio: {on / off:.3f} ({(1 - on / off) * 100:+.1f}% fewer rows/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
