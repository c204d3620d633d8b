"""Replicas benchmark: K `lms mon` processes on one subscription drain one backlog, exactly once.

    .venv/bin/python bench/replicas.py                        # 1 and 4 replicas, 60,000 messages
    .venv/bin/python bench/replicas.py --replicas 1,2,4 --messages 100000

For each K, in one run on one emulator: a fresh topic, subscription and database, the same
backlog of realistic messages (bench/pipeline's pool), then K `lms mon --drain 3` children
(bench/emulator.env settings) started together; the rate is the backlog over the time from
their start to the moment every message is stored (COUNT(*), polled), and the run fails unless
every message is stored once and counted once (lms.devtools.verify). On a machine with fewer
cores than K replicas plus the emulator and the database need, the figure says whether
replicas share one subscription correctly and what they cost, not how they scale.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline.common import (  # noqa: E402
    Context,
    db_scalar,
    expect_consistent,
    make_pool,
    publish_backlog,
)
from bench.pipeline.mon import read_env_file  # noqa: E402
from lms.devtools.database import drop_databases  # noqa: E402
from lms.devtools.emulator import running_emulator  # noqa: E402
from lms.devtools.monitor_process import MonitorProcess  # noqa: E402
from lms.store.migrations import Migrator  # noqa: E402


def drain_with(ctx: Context, replicas: int, count: int) -> dict[str, Any]:
    settings = ctx.settings(f"r{replicas}")
    asyncio.run(Migrator(settings).migrate())
    asyncio.run(publish_backlog(settings, ctx.messages(count)))
    env = read_env_file(ROOT / "bench" / "emulator.env")
    mons = [
        MonitorProcess(
            settings, ctx.workdir / f"k{replicas}", f"mon{i}", env=env, args=("--drain", "3")
        )
        for i in range(replicas)
    ]
    began = time.time()
    for mon in mons:
        mon.start()
    try:
        deadline = began + max(300.0, count / 200)
        while int(db_scalar(settings, "SELECT COUNT(*) FROM service_logs")) < count:
            if time.time() > deadline:
                raise RuntimeError(f"{replicas} replicas did not store {count} in time")
            time.sleep(0.2)
        seconds = time.time() - began
        # Each exits by itself once nothing arrived for 3 s (--drain): a SIGTERM now could
        # land in its exit and read as a failure.
        codes = [mon.wait_blocking(120) for mon in mons]
        for mon, code in zip(mons, codes, strict=True):
            if code != 0:  # say why (its last lines), the figure stands or falls with it
                tail = mon.err_path.read_text(errors="replace").splitlines()[-3:]
                print(f"  {mon.name} of {replicas} exited {code}: {tail}", flush=True)
    finally:
        for mon in mons:
            mon.kill_blocking()
    asyncio.run(expect_consistent(settings, ctx.expected(count)))
    return {"seconds": seconds, "rate": count / seconds, "codes": codes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,4", help="replica counts, comma-separated")
    parser.add_argument("--messages", type=int, default=60_000, help="backlog (60,000)")
    args = parser.parse_args()
    counts = [int(part) for part in args.replicas.split(",")]
    with tempfile.TemporaryDirectory(prefix="lms-replicas-") as scratch:
        workdir = Path(scratch)
        with running_emulator(workdir / "emulator.log") as emulator:
            ctx = Context(args, workdir, emulator.host)
            ctx.emulator = emulator
            ctx.pool = make_pool(20_000, seed=11)
            try:
                results = {k: drain_with(ctx, k, args.messages) for k in counts}
            finally:
                drop_databases(ctx.settings("cleanup"), ctx.databases)
    base = results[counts[0]]["rate"]
    for k, result in results.items():
        print(
            f"{k} replica(s): {args.messages:,} messages in {result['seconds']:.1f} s,"
            f" {result['rate']:,.0f} msg/s (x{result['rate'] / base:.2f} of {counts[0]}),"
            f" stored and counted exactly once; exit codes {result['codes']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
