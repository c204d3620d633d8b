"""The load generator of the ingestion benchmark: `wrk` (C, epoll, a thread per core), so the
client is not what limits the figures, driven by client.lua for the request and its checks.

A Python client would need several processes to keep 64 connections busy on two cores and
would still take CPU the server needs; wrk sends a pre-built request from C and only calls
Lua to check each answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("client.lua")
MARKER = "LMS_WRK "
INSTALL_HINT = (
    "wrk (the HTTP load generator of the ingestion benchmark) is not installed: install it"
    " with `sudo apt-get install -y wrk` (Debian/Ubuntu; `brew install wrk` on macOS), or"
    " point BENCH_INGEST_WRK at the binary"
)


class WrkMissing(RuntimeError):
    """No wrk binary: the message says how to install it."""


def wrk_binary() -> str:
    """$BENCH_INGEST_WRK, else `wrk` on PATH; WrkMissing with the install hint otherwise."""
    configured = os.environ.get("BENCH_INGEST_WRK")
    found = shutil.which(configured or "wrk")
    if found is None:
        raise WrkMissing(INSTALL_HINT)
    return found


@dataclass(frozen=True)
class Load:
    """One wrk run: what it sends, to whom, how hard and what every answer must be."""

    url: str
    connections: int
    seconds: float
    threads: int = 2
    method: str = "GET"
    body: Path | None = None
    content_type: str | None = None
    encoding: str | None = None
    token: str | None = None
    status: int = 200
    expect: str | None = None
    timeout_s: float = 30.0

    def command(self, binary: str) -> list[str]:
        return [
            binary,
            f"--threads={min(self.threads, self.connections)}",
            f"--connections={self.connections}",
            f"--duration={max(1, round(self.seconds))}s",
            f"--timeout={max(1, round(self.timeout_s))}s",
            f"--script={SCRIPT}",
            self.url,
        ]

    def environment(self) -> dict[str, str]:
        values = {
            "LMS_WRK_METHOD": self.method,
            "LMS_WRK_BODY": str(self.body) if self.body else "",
            "LMS_WRK_TYPE": self.content_type or "",
            "LMS_WRK_ENCODING": self.encoding or "",
            "LMS_WRK_TOKEN": self.token or "",
            "LMS_WRK_STATUS": str(self.status),
            "LMS_WRK_EXPECT": self.expect or "",
        }
        return {**os.environ, **values}


def run_wrk(load: Load, binary: str) -> dict:
    """Run `load` to its end; the figures of client.lua's done() line, with `seconds` and
    `good_per_s` (answers that were as expected, per second). Raises RuntimeError when wrk
    fails or prints no figures."""
    done = subprocess.run(
        load.command(binary),
        env=load.environment(),
        capture_output=True,
        text=True,
        timeout=load.seconds + load.timeout_s + 30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}:\n{done.stderr[-2000:]}")
    return parse_output(done.stdout)


def parse_output(stdout: str) -> dict:
    """The figures of the LMS_WRK line of wrk's output, plus derived rates."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            figures: dict = json.loads(line[len(MARKER) :])
            break
    else:
        raise RuntimeError(f"no {MARKER.strip()} line in the output of wrk:\n{stdout[-2000:]}")
    seconds = figures["duration_us"] / 1e6
    figures["seconds"] = seconds
    figures["good_per_s"] = figures["good"] / seconds if seconds > 0 else 0.0
    figures["errors"] = sum(
        figures[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return figures
