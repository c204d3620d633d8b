"""`lms mon` subprocesses for the fault tests: the `lms_mon` fixture and samplers of a run.

The harness itself is lms.devtools.monitor_process (shared with the benchmark and the
end-to-end run); here are only what tests add to it:

* the `lms_mon` fixture (a test module imports `lms_mon_fixture` to have it), a factory
  `lms_mon(settings, name="mon", start=True, **env) -> MonitorProcess` whose monitors log at
  debug level (the "pulled" lines that `received` counts) and are killed at the end;
* `RssSampler`: the resident set size of whichever run of a monitor is alive, every `interval`;
* `MetricsSampler`: a gauge of its /metrics (when started with METRICS_PORT), and its maximum;
* `lms_api`: a real `lms api` child on a free port, for the tests of the API and ingestion.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import aiohttp
import httpx
import psutil
import pytest

from lms.devtools.monitor_process import MonitorProcess, child_environment
from lms.devtools.ports import free_port
from lms.settings import Settings
from tests.helpers import wait_until

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
    """`lms_mon(settings, name="mon", start=True, args=(), command="mon", **env) ->
    MonitorProcess` (command "api" for an `lms api` child); killed at the end."""
    started: list[MonitorProcess] = []

    def make(
        settings: Settings,
        name: str = "mon",
        start: bool = True,
        args: Sequence[str] = (),
        command: str = "mon",
        **env: str,
    ) -> MonitorProcess:
        process = MonitorProcess(
            settings, tmp_path / "lms", name, {"LOG_LEVEL": "debug", **env}, args, command
        )
        started.append(process)
        return process.start() if start else process

    yield make
    for process in started:
        if process.alive:
            process.kill_blocking()


@contextlib.asynccontextmanager
async def lms_api(
    settings: Settings, workdir: Path, port: int | None = None, **env: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A real `lms api` child on `port` (default: a free one), configured by `settings` then
    `env`; yields a client of it once /healthz answers. SIGTERMed at the end, and it must exit
    0 (a clean stop, like `lms mon`)."""
    port = port or free_port()
    log_path = workdir / "api.log"
    output = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("lms")),
        "api",
        "--port",
        str(port),
        env=child_environment(settings, env),
        stdout=output,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:

            async def serving() -> bool:
                assert proc.returncode is None, log_path.read_text()
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get("/healthz")).status_code == 200
                return False

            await wait_until(serving, timeout=30, interval=0.05, message="lms api serving")
            yield client
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
        output.close()
    assert code == 0, log_path.read_text()
