"""Part c: `lms mon` itself draining the same backlog, measured from outside as a process
(rate from its own log lines, peak RSS, CPU seconds); also the profile, rss and tune runs."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from bench.pipeline.common import (
    Context,
    Meter,
    db_scalar,
    expect_consistent,
    log_time,
    process_cpu,
    publish_backlog,
)
from bench.pipeline.profile import start_py_spy, stop_py_spy
from lms.devtools.backlog import subscription_backlog
from lms.devtools.monitor_process import MonitorProcess
from lms.devtools.resources import delete_resources
from lms.settings import Settings


def read_env_file(path: Path) -> dict[str, str]:
    """Plain NAME=value lines; blank lines and # comments are skipped."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise SystemExit(f"bench: {path}:{number}: expected NAME=value, got {line!r}")
        values[name.strip().upper()] = value.strip().strip("'\"")
    return values


class BenchMonitor:
    """`lms mon` of one part (lms.devtools' harness), and what the benchmark measures of it
    from outside: CPU seconds from the moment it is subscribed, and its resident memory."""

    def __init__(self, ctx: Context, settings: Settings, extra: dict[str, str], name: str) -> None:
        # A directory per run (the subscription's name is fresh each time): the harness
        # appends to its log, and a later round must not read an earlier one's lines.
        self.dir = ctx.workdir / name / settings.pubsub_subscription
        self.process = MonitorProcess(settings, self.dir, "mon", extra)
        self.peak_rss = 0
        self.cpu_at_start = 0.0

    def start(self) -> BenchMonitor:
        self.process.start()
        return self

    @property
    def batches(self) -> list[dict[str, Any]]:
        return self.process.batches

    def wait_started(self, timeout: float = 120.0) -> None:
        self.process.wait_started_blocking(timeout)
        self.cpu_at_start = process_cpu(self.process.pid)

    def sample(self) -> int:
        """Logs stored so far, by its log lines; samples its RSS on the way."""
        if not self.process.alive:
            raise RuntimeError(f"lms mon exited early:\n{self.process.tail(15)}")
        with contextlib.suppress(psutil.Error):
            rss = psutil.Process(self.process.pid).memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)
        return self.process.new_rows

    def wait_stored(self, count: int, timeout: float) -> None:
        """Until it stored `count` logs: by its log lines, and by the database every 2 s (in
        case the lines change)."""
        deadline = time.monotonic() + timeout
        last_count = 0.0
        done = 0
        while done < count:
            time.sleep(0.1)
            done = max(done, self.sample())
            if time.monotonic() - last_count > 2:
                last_count = time.monotonic()
                stored = db_scalar(self.process.settings, "SELECT COUNT(*) FROM service_logs")
                done = max(done, stored or 0)
            if time.monotonic() > deadline:
                raise RuntimeError(f"lms mon stored {done} of {count} in {timeout:g} s")

    def vm_hwm(self) -> int:
        """Peak resident set size (bytes) of the live process, from /proc."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return self.peak_rss

    def started_at(self) -> float:
        """Unix time of its "monitor started" line: start-up (imports, migrations) excluded."""
        started = self.process.started_event
        assert started is not None
        return log_time(started) or self.process.spawned_at


def run_mon_drain(
    ctx: Context,
    settings: Settings,
    extra: dict[str, str],
    count: int,
    name: str,
    profile: bool = False,
) -> dict:
    """Start `lms mon` on a published backlog; wait until all is committed; stop; measure."""
    mon = BenchMonitor(ctx, settings, extra, name).start()
    spy: subprocess.Popen[bytes] | None = None
    raw = mon.dir / "profile.raw"
    timeout = max(300.0, count / 300)
    try:
        mon.wait_started()
        if profile:
            spy = start_py_spy(mon.process.pid, raw)
        meter = Meter(ctx).start()
        mon.wait_stored(count, timeout)
        done_wall = time.time()
        cpu_done = process_cpu(mon.process.pid)
        hwm = mon.vm_hwm()
        usage = meter.stop()
        if spy is not None:
            stop_py_spy(spy)
            spy = None
        code = mon.process.stop_blocking()
    finally:
        if spy is not None:
            stop_py_spy(spy)
        mon.process.kill_blocking()
    last_commit = log_time(mon.batches[-1]) if mon.batches else None
    end = last_commit or done_wall
    begin = mon.started_at()
    spawned_at = mon.process.spawned_at
    seconds = end - begin
    cpu = cpu_done - mon.cpu_at_start
    started = mon.process.started_event or {}
    sizes = [int(b.get("size", 0)) for b in mon.batches]
    commits = [float(b.get("commit_seconds", 0) or 0) for b in mon.batches]
    triggers = Counter(str(b.get("trigger")) for b in mon.batches)
    result = {
        "messages": count,
        "seconds": seconds,
        "rate": count / seconds,
        "startup_s": begin - spawned_at,
        "rate_from_spawn": count / (end - spawned_at),
        "peak_rss_mb": hwm / 2**20,
        "cpu_s": cpu,
        "cpu_s_per_1k": cpu / count * 1000,
        "cpu_util": cpu / seconds,
        **usage,
        # The other two processes over the same span, per 1,000 messages: the share of each
        # in what the drain cost the machine (mysqld's includes other clients of the server).
        "emulator_cpu_s_per_1k": usage["emulator_cpu_s"] / count * 1000,
        "mysqld_cpu_s_per_1k": usage["mysqld_cpu_s"] / count * 1000,
        "batches": len(mon.batches),
        "mean_batch": sum(sizes) / len(sizes) if sizes else 0,
        "triggers": dict(triggers),
        # Share of the drain the flusher spent writing (its commit_seconds): near 1, the
        # database write is the bottleneck; well below 1, the flusher waited for messages.
        "commit_busy": sum(commits) / seconds,
        "mean_commit_s": sum(commits) / len(commits) if commits else 0.0,
        "exit_code": code,
        "settings": {
            key: started.get(key)
            for key in ("batchsize", "flushinterval", "max_outstanding", "pull_mode", "pullers")
            if key in started
        },
        "env": extra,
    }
    if profile:
        result["profile_raw"] = str(raw)
    return result


async def part_mon(ctx: Context, name: str, extra: dict[str, str], count: int) -> dict:
    settings = ctx.settings(name)
    try:
        published = await publish_backlog(settings, ctx.messages(count))
        result = await asyncio.to_thread(
            run_mon_drain, ctx, settings, extra, count, name, name == "profile"
        )
        result["stored"] = (await expect_consistent(settings, ctx.expected(count))).total_stored
        result["publish_rate"] = published["rate"]
        result["backlog_after"] = await subscription_backlog(settings, pull_timeout=2.0)
        return result
    finally:
        await delete_resources(settings)
