"""Write cost of each schema version: rows/s through Storage.write_batch, the real write path.

    .venv/bin/python bench/write_cost.py                    # versions 3 and 4, 200,000 rows
    .venv/bin/python bench/write_cost.py --versions 2,3,4 --runs 3

For each run and version (interleaved, so drift of the machine hits all alike) a fresh database
is migrated up to that version and filled with `--rows` realistic rows (lms.devtools.seed's
generator: 48 services, short one-line payloads, most with trace/resource/commit context) in
transactions of `--batch` rows. Short payloads are the dear case for version 4, whose five
filter indexes then hold each payload; logs longer than 255 characters add nothing there.
Version 2 is the oldest one the write path can fill (it added the tracing columns).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lms.devtools.database import drop_databases  # noqa: E402
from lms.devtools.seed import generate  # noqa: E402
from lms.settings import load_settings  # noqa: E402
from lms.store.migrations import Migrator, migration_files  # noqa: E402
from lms.store.writer import BatchWriter, StoredLog  # noqa: E402


def logs(rows: int) -> list[StoredLog]:
    return [StoredLog(row.message_id, row.record()) for row in generate(rows, seed=9)]


def drop_database(name: str) -> None:
    drop_databases(load_settings(_env_file=None), [name])


WRITER_NEEDS = (5, 9, 10, 11, 13, 14, 15)
"""The migrations the write path needs whatever version is measured (the idempotency key
column of 5, the pattern_id column of 9, the volume rollup of 10, the request rollups of 11
and 14, the pattern rollups of 13, the commit rollup of 15): a version below one is measured
with its indexes plus those migrations."""


async def write_rate(version: int, batches: list[list[StoredLog]], database: str) -> float:
    """Rows/s writing `batches` into a fresh `database` at schema `version`."""
    with tempfile.TemporaryDirectory() as tmp:
        for path in migration_files():
            number = int(path.name.split("_")[0])
            if number <= version or number in WRITER_NEEDS:
                (Path(tmp) / path.name).write_text(path.read_text())
        settings = load_settings(_env_file=None, mysql_database=database)
        await Migrator(settings, Path(tmp)).migrate()
        storage = BatchWriter(settings)
        try:
            began = time.perf_counter()
            for batch in batches:
                await storage.write_batch(batch, [])
            elapsed = time.perf_counter() - began
        finally:
            await storage.close()
    return sum(map(len, batches)) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per run (200,000)")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per transaction")
    parser.add_argument("--runs", type=int, default=2, help="runs per version")
    parser.add_argument("--versions", default="3,4", help="schema versions to compare (3,4)")
    parser.add_argument(
        "--prefix", default="lms_bench_write", help="databases: PREFIX_vN, dropped after each run"
    )
    args = parser.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_]{1,50}", args.prefix):
        parser.error("--prefix: letters, digits and _ only")
    newest = max(int(script.name.split("_")[0]) for script in migration_files())
    try:
        versions = [int(v) for v in args.versions.split(",")]
    except ValueError:
        parser.error(f"--versions: numbers separated by commas, not {args.versions!r}")
    if not all(2 <= v <= newest for v in versions):
        parser.error(f"--versions: each one from 2 to {newest}")
    every = logs(args.rows)
    batches = [every[i : i + args.batch] for i in range(0, len(every), args.batch)]
    rates: dict[int, list[float]] = {v: [] for v in versions}
    for run in range(args.runs):
        for version in versions:
            database = f"{args.prefix}_v{version}"
            drop_database(database)  # the migration creates it afresh
            try:
                rate = asyncio.run(write_rate(version, batches, database))
            finally:
                drop_database(database)
            rates[version].append(rate)
            print(f"  run {run + 1}, version {version}: {rate:,.0f} rows/s", flush=True)
    print(f"\n{args.rows:,} rows in transactions of {args.batch:,}, Storage.write_batch:")
    for version, got in rates.items():
        print(f"  version {version}: {min(got):,.0f}-{max(got):,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
