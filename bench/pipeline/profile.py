"""The profile part: `lms mon` under py-spy, and where its time goes, per function and area."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.pipeline.common import say


def start_py_spy(pid: int, output: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        say("bench: py-spy not found (pip install py-spy); no profile")
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "-o", str(output)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=output.with_suffix(".err").open("wb"),
    )


def stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


_AREAS: list[tuple[str, str]] = [
    ("grpc/", "gRPC (grpc.aio, incl. its C core)"),
    ("google/protobuf", "protobuf / proto-plus"),
    ("/proto/", "protobuf / proto-plus"),
    ("google/pubsub_v1", "Pub/Sub client (gapic)"),
    ("google/api_core", "Pub/Sub client (gapic)"),
    ("aiomysql", "MySQL driver (aiomysql / PyMySQL)"),
    ("pymysql", "MySQL driver (aiomysql / PyMySQL)"),
    ("lms/domain/patterns", "top-patterns masking (lms.domain.patterns)"),
    ("lms/domain/record", "parsing + validation (lms.domain.record, json)"),
    ("lms/domain/strictjson", "parsing + validation (lms.domain.record, json)"),
    ("json/", "parsing + validation (lms.domain.record, json)"),
    ("pydantic", "parsing + validation (lms.domain.record, json)"),
    ("structlog", "logging (structlog)"),
    ("prometheus_client", "metrics (prometheus_client)"),
    ("tenacity", "retry wrappers (tenacity)"),
    ("asyncio/", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
    ("lms/", "lms (own code)"),
]


def _frame(text: str) -> tuple[str, str]:
    """'func (path:line)' -> ('func (module)', path)."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", text)
    if not match:
        return text, ""
    func, path = match.groups()
    short = path
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in short:
            short = short.split(marker, 1)[1]
    return f"{func} ({short})", path


def _is_scaffolding(name: str, path: str) -> bool:
    """Frames on (nearly) every stack, which say nothing about where the time goes."""
    return (
        "asyncio/" in path
        or path.endswith(("lms/cli.py", "threading.py"))
        or name.startswith("<module>")
    )


def _area(name: str, path: str) -> str:
    if name.startswith("Thread.run "):
        # grpc.aio's completion-queue poller thread ("_poll_wrapper"): its C core at work
        return "gRPC C core (its poller thread: sockets, HTTP/2, protobuf bytes)"
    if name.startswith("__create_fn__"):
        return "dataclass constructors (per message)"
    for needle, area in _AREAS:
        if needle in path:
            return area
    return "other"


def summarize_profile(raw: Path, top: int = 15) -> dict:
    """Top functions by own and by total time, and own time per area, from py-spy raw output."""
    if not raw.exists():
        return {"samples": 0}
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        samples += count
        name, path = frames[-1]
        own[name] += count
        areas[_area(name, path)] += count
        for seen in {name for name, path in frames if not _is_scaffolding(name, path)}:
            total[seen] += count
    if not samples:
        return {"samples": 0}

    def pct(counter: Counter[str], limit: int) -> list[list[Any]]:
        return [[name, round(100 * n / samples, 1)] for name, n in counter.most_common(limit)]

    return {
        "samples": samples,
        "top_own": pct(own, top),
        "top_total": pct(total, top),
        "areas": pct(areas, len(areas)),
    }
