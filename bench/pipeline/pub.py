"""The pub part: `lms pub` throughput, with a subscription on its topic and without."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time

from bench.pipeline.common import Context
from lms.devtools.monitor_process import child_environment, lms_command
from lms.devtools.resources import delete_resources, ensure_resources


async def part_pub(ctx: Context, count: int, subscription: bool) -> dict:
    settings = ctx.settings("pub")
    ctx.databases.pop()
    try:
        if subscription:
            await ensure_resources(settings)
        env = child_environment(settings, {"LOG_FORMAT": "console"})
        load = os.getloadavg()[0]
        started = time.perf_counter()
        done = await asyncio.to_thread(
            subprocess.run,
            [*lms_command(), "pub", str(count)],
            cwd=ctx.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(600, count / 100),
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"lms pub failed ({done.returncode}):\n{done.stderr[-2000:]}")
        match = re.search(r"\(([\d.]+) s, ([\d,]+) msg/s\)", done.stdout)
        if not match:
            raise RuntimeError(f"no msg/s in the output of lms pub:\n{done.stdout[-1000:]}")
        return {
            "messages": count,
            "seconds": float(match.group(1)),
            "rate": float(match.group(2).replace(",", "")),
            "wall_s": wall,
            "subscription": subscription,
            "load1": load,
        }
    finally:
        await delete_resources(settings)
