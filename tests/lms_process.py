"""`lms mon` subprocesses for the fault tests: the `lms_mon` fixture and samplers of a run.

The harness itself is lms.devtools.monitor_process (shared with the benchmark and the
end-to-end run); here are only what tests add to it:

* the `lms_mon` fixture (a test module imports `lms_mon_fixture` to have it), a factory
  `lms_mon(settings, name="mon", start=True, **env) -> MonitorProcess` whose monitors log at
  debug level (the "pulled" lines that `received` counts) and are killed at the end;
* `RssSampler`: the resident set size of whichever run of a monitor is alive, every `interval`;
* `MetricsSampler`: a gauge of its /metrics (when started with METRICS_PORT), and its maximum.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import aiohttp
import psutil
import pytest

from lms.devtools.monitor_process import MonitorProcess
from lms.settings import Settings

LmsFactory = Callable[..., MonitorProcess]


class _Sampler:
    """A background task of the test's event loop that samples something until stopped."""

    interval: float

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> _Sampler:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)

    async def sample(self) -> None:
        raise NotImplementedError


class RssSampler(_Sampler):
    """Samples the resident set size (bytes) of whichever run of `process` is alive."""

    def __init__(self, process: MonitorProcess, interval: float = 0.2) -> None:
        super().__init__()
        self.process = process
        self.interval = interval
        self.started = time.monotonic()
        self.samples: list[tuple[float, int]] = []

    @property
    def max(self) -> int:
        return max((rss for _t, rss in self.samples), default=0)

    async def sample(self) -> None:
        if self.process.alive:
            with contextlib.suppress(psutil.Error):
                rss = psutil.Process(self.process.pid).memory_info().rss
                self.samples.append((time.monotonic() - self.started, rss))


class MetricsSampler(_Sampler):
    """Polls a gauge of the monitor's /metrics (METRICS_PORT must be set) and keeps its max."""

    def __init__(self, port: int, name: str, interval: float = 0.25) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.name = name
        self.interval = interval
        self.values: list[float] = []
        self._http: aiohttp.ClientSession | None = None

    @property
    def max(self) -> float:
        return max(self.values, default=0.0)

    async def stop(self) -> None:
        await super().stop()
        if self._http is not None:
            await self._http.close()

    async def sample(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._http.get(self.url) as response:
                for line in (await response.text()).splitlines():
                    if line.startswith(self.name + " "):
                        self.values.append(float(line.split()[1]))


@pytest.fixture(name="lms_mon")
def lms_mon_fixture(tmp_path: Path) -> Iterator[LmsFactory]:
    """`lms_mon(settings, name="mon", start=True, args=(), **env) -> MonitorProcess`; killed
    at the end."""
    started: list[MonitorProcess] = []

    def make(
        settings: Settings,
        name: str = "mon",
        start: bool = True,
        args: Sequence[str] = (),
        **env: str,
    ) -> MonitorProcess:
        process = MonitorProcess(
            settings, tmp_path / "lms", name, {"LOG_LEVEL": "debug", **env}, args
        )
        started.append(process)
        return process.start() if start else process

    yield make
    for process in started:
        if process.alive:
            process.kill_blocking()
