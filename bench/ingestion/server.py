"""`lms api` as the benchmark runs it: a real child process (`python -m lms.cli api`)
configured by environment variables like production, and what is measured of it from
outside: resident memory sampled all along (all its processes, with API_WORKERS > 1) and
CPU seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from bench.pipeline.common import process_cpu
from lms.devtools.monitor_process import child_environment, lms_command
from lms.devtools.ports import LOCALHOST, free_port
from lms.settings import Settings

SAMPLE_SECONDS = 0.2


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (uvicorn's workers)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


class ApiServer:
    """One `lms api` child on a free port, with a thread sampling its RSS until stopped."""

    def __init__(self, settings: Settings, extra: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.log_path = workdir / f"api-{self.port}.log"
        self.env = child_environment(settings, {"LOG_FORMAT": "console", **extra})
        self.workdir = workdir
        self.samples: list[tuple[float, int]] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout: float = 60.0) -> ApiServer:
        """Start it and return once /healthz answers 200 (every worker of API_WORKERS may
        not be up yet: the caller warms up before it measures)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [*lms_command(), "api", "--port", str(self.port)],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self._proc.poll() is not None:
                raise RuntimeError(f"lms api exited {self._proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"lms api did not serve within {timeout:g} s:\n{self.tail()}")
            time.sleep(0.1)
        self._sampler.start()
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _sample(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(SAMPLE_SECONDS):
            self.samples.append((time.monotonic() - started, tree_rss(self.pid)))

    def rss_now(self) -> int:
        return tree_rss(self.pid)

    def peak_rss(self, since: int = 0) -> int:
        """The highest sample from sample number `since` on."""
        return max((rss for _t, rss in self.samples[since:]), default=0)

    def cpu(self) -> float:
        """CPU seconds of it and its workers so far."""
        return process_cpu(self.pid, children=True)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and its exit code (0: a clean stop); SIGKILL if it takes too long."""
        self._stop.set()
        if self._sampler.is_alive():
            self._sampler.join()
        if self._proc is None:
            return 0
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # its workers too
            self._proc.wait()
            raise RuntimeError(
                f"lms api did not stop within {timeout:g} s:\n{self.tail()}"
            ) from None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""
