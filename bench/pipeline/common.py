"""What every part of the pipeline benchmark shares: its settings, the message pool, the
scratch databases, CPU meters, and running one part so that its failure spares the others."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from lms.devtools.database import connect_blocking
from lms.devtools.emulator import Emulator
from lms.devtools.resources import ensure_resources
from lms.devtools.traffic import BatchPublisher, LogFactory, service_names
from lms.devtools.verify import Consistency, Key, check_consistency
from lms.domain.record import LogRecord
from lms.ingest.sources.pubsub import client as pubsub
from lms.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / "bench" / "emulator.env"
DOCS = ROOT / "docs" / "performance.md"
PROJECT = "lms-bench"
PAYLOAD_CHARS = (50, 2000)
SERVICES = 20
POOL = 20_000  # distinct messages generated; a bigger backlog cycles through them
DB_BATCH = 5000
HOLD = 5000
RSS_MESSAGES = 1_000_000
RSS_LIMIT_MB = 250
PUB_TARGET = 20_000
RATIO_TARGET = 0.85
CPU_TARGET = 0.03
"""CPU seconds per 1,000 messages of lms mon itself (issue 18: half of 0.057)."""

Message = tuple[bytes, Key]
"""A body to publish and the (service, severity) it must be stored as."""


def say(text: str) -> None:
    print(text, flush=True)


def process_cpu(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of a process (and its children)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if children else [proc]
        return _cpu_of(procs)
    except psutil.Error:
        return 0.0


def group_cpu(pgid: int) -> float:
    """User + system CPU seconds of every live process of process group `pgid`: the emulator
    is a launcher and the Java process it starts, wherever that is in the tree."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
    return _cpu_of(members)


def _cpu_of(procs: list[psutil.Process]) -> float:
    total = 0.0
    for item in procs:
        with contextlib.suppress(psutil.Error):
            times = item.cpu_times()
            total += times.user + times.system
    return total


def mysqld_pid() -> int | None:
    """The PID of the running server, from its own pid file (@@pid_file) when this host can
    read it, else the first process named mariadbd or mysqld."""
    with contextlib.suppress(Exception):
        conn = connect_blocking(load_settings(_env_file=None))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@pid_file")
                row = cur.fetchone()
        finally:
            conn.close()
        if row and row[0]:
            pid = int(Path(str(row[0])).read_text().strip())
            if psutil.pid_exists(pid):
                return pid
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("mariadbd", "mysqld"):
            return int(proc.pid)
    return None


class Meter:
    """CPU use over a span: the emulator, the database server and the whole machine, as
    shares of one core (`*_cpu_util`) and as CPU seconds (`*_cpu_s`)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.mysqld = ctx.mysqld_pid

    def start(self) -> Meter:
        self.t0 = time.monotonic()
        self.emulator0 = self.ctx.emulator_cpu()
        self.mysqld0 = process_cpu(self.mysqld) if self.mysqld else 0.0
        self.machine0 = psutil.cpu_times()
        self.load = os.getloadavg()[0]
        return self

    def stop(self) -> dict[str, float]:
        seconds = max(time.monotonic() - self.t0, 1e-9)
        machine = psutil.cpu_times()
        total = sum(machine) - sum(self.machine0)
        idle = (machine.idle + machine.iowait) - (self.machine0.idle + self.machine0.iowait)
        mysqld = process_cpu(self.mysqld) - self.mysqld0 if self.mysqld else 0.0
        emulator = self.ctx.emulator_cpu() - self.emulator0
        return {
            "emulator_cpu_s": emulator,
            "mysqld_cpu_s": mysqld,
            "emulator_cpu_util": emulator / seconds,
            "mysqld_cpu_util": mysqld / seconds,
            "machine_busy": (total - idle) / total if total > 0 else 0.0,
            "load1": self.load,
        }


class Context:
    """What every part shares: the emulator, the message pool, scratch dirs, cleanup lists."""

    def __init__(self, args: argparse.Namespace, workdir: Path, emulator_host: str) -> None:
        self.args = args
        self.workdir = workdir
        self.host = emulator_host
        self.emulator: Emulator | None = None
        self.databases: list[str] = []
        self.pool: list[Message] = []
        self.records: list[LogRecord] = []
        self.mysqld_pid = mysqld_pid()

    def settings(self, part: str, **overrides: Any) -> Settings:
        """A topic, subscription and database of their own for one part; a monitor of the
        part logs at info level (debug lines would cost it time) and serves no metrics unless
        the part asks."""
        suffix = secrets.token_hex(4)
        name = f"bench-{part}-{suffix}"
        database = f"lms_bench_{part}_{suffix}".replace("-", "_")
        self.databases.append(database)
        return load_settings(
            **{
                "_env_file": None,
                "pubsub_emulator_host": self.host,
                "pubsub_project": PROJECT,
                "pubsub_topic": name,
                "pubsub_subscription": name,
                "mysql_database": database,
                "log_level": "info",
                "metrics_port": 0,
                **overrides,
            }
        )

    def messages(self, count: int) -> list[Message]:
        return [self.pool[index % len(self.pool)] for index in range(count)]

    def expected(self, count: int) -> Counter[Key]:
        """Per (service, severity), what storing `messages(count)` must end with."""
        return Counter(key for _body, key in self.messages(count))

    def emulator_cpu(self) -> float:
        if self.emulator:
            return group_cpu(self.emulator.pgid)
        pid = listener_pid(self.host)
        return process_cpu(pid, children=True) if pid else 0.0


def listener_pid(host: str) -> int | None:
    """The process listening on host:port (an emulator we did not start), if visible."""
    port = int(host.rpartition(":")[2])
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    return None


def make_pool(count: int, seed: int) -> list[Message]:
    rng = random.Random(seed)
    factory = LogFactory(rng, payload_chars=PAYLOAD_CHARS)
    services = service_names(SERVICES)
    return [factory.make(rng.choice(services)) for _ in range(count)]


def db_scalar(settings: Settings, sql: str) -> Any:
    conn = connect_blocking(settings, settings.mysql_database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


async def expect_consistent(settings: Settings, expected: Counter[Key]) -> Consistency:
    """The part stored each message once and counted it once, or it failed: a rate of a
    pipeline that loses or doubles logs is no figure."""
    consistency = await check_consistency(settings, expected)
    if not consistency.ok:
        raise RuntimeError(
            f"the database disagrees with what was published:\n{consistency.table()}"
        )
    return consistency


async def publish_backlog(settings: Settings, messages: list[Message]) -> dict:
    """Topic and subscription first, then the backlog, 8 requests of 1,000 in flight."""
    await ensure_resources(settings)
    async with pubsub.publisher_client(settings) as client:
        publisher = BatchPublisher(client, settings)
        started = time.perf_counter()
        await publisher.publish(messages)
        seconds = time.perf_counter() - started
    assert publisher.tally.total == len(messages)
    return {"published": len(messages), "seconds": seconds, "rate": len(messages) / seconds}


def log_time(event: dict) -> float | None:
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


async def run_step(part: str, key: str, step: Callable[[], Any], results: dict) -> dict | None:
    """One part; a failure is reported and recorded, and the other parts still run."""
    say(f"== {part}: {key} (load {os.getloadavg()[0]:.2f})")
    started = time.monotonic()
    try:
        result = await step()
    except Exception as exc:  # a benchmark part failing must not lose the others
        say(f"   FAILED: {exc!r}")
        results.setdefault("errors", {})[key] = repr(exc)
        return None
    say(f"   {summary(result)} ({time.monotonic() - started:.0f} s)")
    return dict(result)


def summary(result: dict) -> str:
    keys = ("rate", "per_pull", "peak_rss_mb", "cpu_s_per_1k", "commit_p50_ms", "commit_p99_ms")
    return ", ".join(
        f"{key}={result[key]:,.3g}" if isinstance(result[key], float) else f"{key}={result[key]}"
        for key in keys
        if key in result
    )
