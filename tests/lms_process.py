"""`lms mon` as a real subprocess, for fault-injection tests: signals, logs and memory.

`LmsProcess(settings, workdir)` exports every field of a `Settings` object as its environment
variable (so the child sees exactly the configuration the test built, e.g. MYSQL_PORT of a
proxy), forces LOG_FORMAT=json and LOG_LEVEL=debug, and runs `python -m lms.cli.main mon` in a
scratch directory (no stray `.env`). Its stdout goes to a file, parsed on demand into events
(one dict per JSON line); stderr to another file.

* `sigterm()`, `sigkill()`, `sigstop()`, `sigcont()`, `await wait(timeout)`.
* `events(name)`: the log lines whose `event` is `name` ("pulled", "batch committed", ...).
* `received`, `committed`, `duplicates`: totals read from those lines.
* `RssSampler`: samples the resident set size of the process every `interval` seconds;
  `MetricsSampler`: a gauge of its /metrics (when started with METRICS_PORT).

The `lms_mon` fixture (a test module imports `lms_mon_fixture` to have it) is a factory:
`lms_mon(settings, name="a") -> LmsProcess` (started); it kills what still runs at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from pydantic import SecretStr

from lms.settings import Settings
from tests.helpers import wait_until

# Variables a developer's shell may hold that must not leak into the child.
_OWN_PREFIXES = ("PUBSUB_", "MYSQL_", "LOG_", "METRICS_", "SIM_", "PUBLISH_")


def settings_env(settings: Settings) -> dict[str, str]:
    """Every set field of `settings` as the environment variable that configures it."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | dict | tuple):
            text = json.dumps(value)
        else:
            text = str(value)
        env[name.upper()] = text
    return env


class LmsProcess:
    """One `lms mon` subprocess; see the module docstring."""

    def __init__(self, settings: Settings, workdir: Path, name: str = "mon", **env: str) -> None:
        self.settings = settings
        self.name = name
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.generation = 0
        self.log_path = workdir / f"{name}.log"
        self.err_path = workdir / f"{name}.err"
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._events: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = b""

    # --- life cycle --------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(_OWN_PREFIXES) and key.upper() not in _setting_names()
        }
        return {
            **base,
            **settings_env(self.settings),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "debug",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def start(self) -> LmsProcess:
        """Start (or restart, after it exited) the process; logs of every run are appended."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.generation += 1
        with self.log_path.open("ab") as out, self.err_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lms.cli", "mon"],
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # a Ctrl-C of pytest is not also its SIGINT
            )
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)

    def sigterm(self) -> None:
        self._signal(signal.SIGTERM)

    def sigkill(self) -> None:
        self._signal(signal.SIGKILL)

    def sigstop(self) -> None:
        self._signal(signal.SIGSTOP)

    def sigcont(self) -> None:
        self._signal(signal.SIGCONT)

    async def wait(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109
        """The exit code, polling so the event loop (and the test's proxies) keep running."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still running after {timeout}s\n{self.tail()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    async def kill(self) -> int:
        """SIGKILL and reap."""
        self.sigkill()
        return await self.wait(30)

    async def stop(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109
        """SIGTERM, wait for the exit code; SIGKILL if it does not exit within `timeout`."""
        if not self.alive:
            return self.returncode if self.returncode is not None else 0
        self.sigcont()
        self.sigterm()
        try:
            return await self.wait(timeout)
        except AssertionError:
            await self.kill()
            raise

    # --- logs --------------------------------------------------------------------------------

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON log lines so far (of every run of this process), optionally by event."""
        with contextlib.suppress(FileNotFoundError), self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
            self._offset += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()  # an incomplete last line waits for the rest
            for line in lines:
                if not line.strip():
                    continue
                try:
                    self._events.append(json.loads(line))
                except ValueError:
                    # A line cut by SIGKILL, or a non-JSON line: keep it visible.
                    self._events.append(
                        {"event": "<unparsed>", "line": line.decode(errors="replace")}
                    )
        if name is None:
            return list(self._events)
        return [event for event in self._events if event.get("event") == name]

    def matching(self, prefix: str) -> list[dict[str, Any]]:
        """The log lines whose event starts with `prefix` (e.g. "database write failed")."""
        return [e for e in self.events() if str(e.get("event", "")).startswith(prefix)]

    @property
    def received(self) -> int:
        """Messages pulled, from the debug "pulled" lines."""
        return sum(int(e["count"]) for e in self.events("pulled"))

    @property
    def committed(self) -> int:
        """Messages in committed batches (stored, rejected or duplicate)."""
        return sum(int(e["size"]) for e in self.events("batch committed"))

    @property
    def duplicates(self) -> int:
        return sum(int(e["duplicates"]) for e in self.events("batch committed"))

    @property
    def max_outstanding_seen(self) -> int:
        return max((int(e["outstanding"]) for e in self.events("pulled")), default=0)

    def count(self, name: str) -> int:
        return len(self.events(name))

    async def wait_for(
        self,
        name: str,
        count: int = 1,
        timeout: float = 60.0,  # noqa: ASYNC109
        where: Callable[[dict[str, Any]], bool] = lambda _event: True,
    ) -> list[dict[str, Any]]:
        """Wait until at least `count` lines of event `name` (matching `where`) were logged."""

        def found() -> list[dict[str, Any]] | None:
            hits = [event for event in self.events(name) if where(event)]
            if len(hits) >= count:
                return hits
            if not self.alive:
                raise AssertionError(f"{self.name} exited waiting for {name!r}\n{self.tail()}")
            return None

        return await wait_until(  # type: ignore[return-value]
            found, timeout=timeout, interval=0.05, message=f"{self.name}: {count} x {name!r}"
        )

    async def wait_started(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Until this run (generation) logged "monitor started"."""
        await self.wait_for("monitor started", count=self.generation, timeout=timeout)

    def tail(self, lines: int = 40) -> str:
        def last(path: Path) -> str:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return ""
            return "\n".join(text.splitlines()[-lines:])

        return (
            f"--- {self.name}: exit code {self.returncode}, log {self.log_path}\n"
            f"{last(self.log_path)}\n--- stderr\n{last(self.err_path)}"
        )

    def errors(self) -> list[dict[str, Any]]:
        """Lines logged at level error or above (and tracebacks, which are logged as errors)."""
        return [e for e in self.events() if e.get("level") in {"error", "critical"}]


class RssSampler:
    """Samples the resident set size (bytes) of whichever run of `process` is alive."""

    def __init__(self, process: LmsProcess, interval: float = 0.2) -> None:
        self.process = process
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def max(self) -> int:
        return max((rss for _t, rss in self.samples), default=0)

    def start(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        started = time.monotonic()
        while True:
            if self.process.alive:
                with contextlib.suppress(psutil.Error):
                    rss = psutil.Process(self.process.pid).memory_info().rss
                    self.samples.append((time.monotonic() - started, rss))
            await asyncio.sleep(self.interval)


class MetricsSampler:
    """Polls a gauge of the monitor's /metrics (METRICS_PORT must be set) and keeps its max."""

    def __init__(self, port: int, name: str, interval: float = 0.25) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.name = name
        self.interval = interval
        self.values: list[float] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def max(self) -> float:
        return max(self.values, default=0.0)

    def start(self) -> MetricsSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.url) as response:
                        for line in (await response.text()).splitlines():
                            if line.startswith(self.name + " "):
                                self.values.append(float(line.split()[1]))
                await asyncio.sleep(self.interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


LmsFactory = Callable[..., LmsProcess]


@pytest.fixture(name="lms_mon")
def lms_mon_fixture(tmp_path: Path) -> Iterator[LmsFactory]:
    """`lms_mon(settings, name="mon", start=True, **env) -> LmsProcess`; killed at the end."""
    started: list[LmsProcess] = []

    def make(settings: Settings, name: str = "mon", start: bool = True, **env: str) -> LmsProcess:
        process = LmsProcess(settings, tmp_path / "lms", name, **env)
        started.append(process)
        return process.start() if start else process

    yield make
    for process in started:
        if process.alive:
            process.sigcont()
            process.sigkill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                assert process.proc is not None
                process.proc.wait(timeout=10)
