"""`lms mon` as a real child process, for the checks that need one: fault tests, the pipeline
benchmark and the end-to-end run.

A child process is the only way to prove what an operator relies on: the environment it is
configured by, its exit code on SIGTERM, that SIGKILL at any moment loses nothing, its memory.
So the child is configured exactly like production (environment variables, written from a
`Settings` object), its JSON log lines are the interface checks read, and it leads its own
session so that a Ctrl-C of the caller is not also its SIGINT.

Every wait has an `async` form for callers on an event loop (a test whose TCP proxies must keep
running meanwhile) and a `_blocking` one for plain scripts; both poll the same conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import SecretStr

from lms.settings import Settings

Event = dict[str, Any]
"""One JSON log line of `lms mon`; its `event` names what happened ("batch committed", ...)."""

T = TypeVar("T")

OWN_PREFIXES = ("PUBSUB_", "MYSQL_", "LOG_", "METRICS_", "SIM_", "PUBLISH_", "API_")
"""Variables of a developer's shell that would configure the child behind the caller's back."""
POLL_SECONDS = 0.05
STARTED = "monitor started"
COMMITTED = "batch committed"


class MonitorError(AssertionError):
    """The monitor did not do what the caller waited for (exited, or too slow).

    An AssertionError, so that a test reports it as a failed expectation with the monitor's
    log tail, not as a crash of the harness.
    """


def lms_command() -> list[str]:
    """`lms` run by this interpreter, so the child imports the same tree as the caller."""
    return [sys.executable, "-m", "lms.cli"]


def settings_env(settings: Settings) -> dict[str, str]:
    """Every set field of `settings` as the environment variable that configures it.

    MAX_OUTSTANDING is left out while it is the value derived from BATCHSIZE: the child derives
    it again, also when the caller's extra variables change BATCHSIZE.
    """
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if name == "max_outstanding" and value == 2 * settings.batchsize:
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


def child_environment(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an `lms` child configured by `settings`, then by `extra`.

    The caller's own LMS variables are dropped first, so the child sees the configuration the
    caller built and nothing a shell happened to export. Logs are JSON lines (the interface
    the checks read) and unbuffered (a SIGKILLed child loses no line it wrote).
    """
    names = {name.upper() for name in Settings.model_fields}
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(OWN_PREFIXES) and key.upper() not in names
    }
    return {
        **inherited,
        **settings_env(settings),
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


def _polls(
    condition: Callable[[], T | None], timeout: float, failure: Callable[[], str]
) -> Generator[float, None, T]:
    """Yields the seconds to sleep until `condition` returns something; that is the result.

    One waiting loop for both the blocking and the async waits, which differ only in how they
    sleep. Raises MonitorError with `failure()` when `timeout` runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise MonitorError(failure())
        yield POLL_SECONDS


def _block(polls: Generator[float, None, T]) -> T:
    try:
        while True:
            time.sleep(next(polls))
    except StopIteration as done:
        value: T = done.value  # what the generator returned
        return value


async def _await(polls: Generator[float, None, T]) -> T:
    try:
        while True:  # noqa: ASYNC110  (a child process and its log files set no asyncio.Event)
            await asyncio.sleep(next(polls))
    except StopIteration as done:
        value: T = done.value  # what the generator returned
        return value


class MonitorProcess:
    """One `lms mon` child, restartable; its stdout (JSON lines) and stderr go to files.

    Logs of every run (generation) are appended to `<workdir>/<name>.log` and `.err`, so a
    check after restarts sees the whole story.
    """

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        name: str = "mon",
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        command: str = "mon",
    ) -> None:
        self.settings = settings
        self.command = command
        """The `lms` command run: `mon`, or `api` for the fault tests of HTTP ingestion."""
        self.args = tuple(args)
        """Options of the command itself, e.g. ("--drain", "1")."""
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.err_path = workdir / f"{name}.err"
        self.extra_env = dict(env or {})
        self.generation = 0
        self.spawned_at = 0.0
        """Unix time of the latest start, to time start-up against its "monitor started"."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._events: list[Event] = []
        self._offset = 0
        self._partial = b""

    # --- life cycle ----------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        return child_environment(self.settings, self.extra_env)

    def start(self) -> Self:
        """Start it, or start it again once it exited."""
        if self.alive:
            raise MonitorError(f"{self.name} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.generation += 1
        with self.log_path.open("ab") as out, self.err_path.open("ab") as err:
            self.spawned_at = time.time()
            self._proc = subprocess.Popen(
                [*lms_command(), self.command, *self.args],
                cwd=self.workdir,  # no stray .env of the caller's directory
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise MonitorError(f"{self.name} was never started")
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def send(self, signum: int) -> None:
        """Signal the process if it still exists (a late signal is not an error)."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signum)

    def sigterm(self) -> None:
        self.send(signal.SIGTERM)

    def sigkill(self) -> None:
        self.send(signal.SIGKILL)

    def sigstop(self) -> None:
        self.send(signal.SIGSTOP)

    def sigcont(self) -> None:
        self.send(signal.SIGCONT)

    def _exit_polls(self, timeout: float) -> Generator[float, None, int]:
        return _polls(
            lambda: self.returncode,
            timeout,
            lambda: f"{self.name} still running after {timeout:g} s\n{self.tail()}",
        )

    async def wait(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109  (a failure, not a cancel)
        """Its exit code, polling so that the caller's event loop keeps running."""
        return await _await(self._exit_polls(timeout))

    def wait_blocking(self, timeout: float = 60.0) -> int:
        return _block(self._exit_polls(timeout))

    async def kill(self) -> int:
        """SIGKILL and reap."""
        self.sigkill()
        return await self.wait(30)

    def kill_blocking(self) -> int | None:
        """SIGKILL and reap, if it was started."""
        if self._proc is None:
            return None
        self.sigkill()
        return self.wait_blocking(30)

    def _signal_stop(self) -> int | None:
        """SIGTERM (after SIGCONT, in case it is frozen); its exit code if already gone."""
        if not self.alive:
            return self.returncode if self.returncode is not None else 0
        self.sigcont()
        self.sigterm()
        return None

    async def stop(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109  (a failure, not a cancel)
        """SIGTERM and its exit code; SIGKILL and MonitorError if it takes over `timeout` s."""
        code = self._signal_stop()
        if code is not None:
            return code
        try:
            return await self.wait(timeout)
        except MonitorError:
            await self.kill()
            raise

    def stop_blocking(self, timeout: float = 60.0) -> int:
        code = self._signal_stop()
        if code is not None:
            return code
        try:
            return self.wait_blocking(timeout)
        except MonitorError:
            self.kill_blocking()
            raise

    # --- its log -----------------------------------------------------------------------------

    def events(self, name: str | None = None) -> list[Event]:
        """Its JSON log lines so far (of every run), optionally only those of event `name`."""
        with contextlib.suppress(FileNotFoundError), self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
            self._offset += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()  # an incomplete last line waits for the rest
            for line in lines:
                if line.strip():
                    self._events.append(_parse(line))
        if name is None:
            return list(self._events)
        return [event for event in self._events if event.get("event") == name]

    def matching(self, prefix: str) -> list[Event]:
        """The lines whose event starts with `prefix` (e.g. "database write failed")."""
        return [e for e in self.events() if str(e.get("event", "")).startswith(prefix)]

    def count(self, name: str) -> int:
        return len(self.events(name))

    @property
    def started_event(self) -> Event | None:
        """The first "monitor started" line: its settings as the monitor understood them."""
        started = self.events(STARTED)
        return started[0] if started else None

    @property
    def batches(self) -> list[Event]:
        return self.events(COMMITTED)

    @property
    def received(self) -> int:
        """Messages pulled, from the "pulled" lines (LOG_LEVEL=debug)."""
        return sum(int(e["count"]) for e in self.events("pulled"))

    @property
    def committed(self) -> int:
        """Messages in committed batches (stored, rejected or duplicate)."""
        return sum(int(e["size"]) for e in self.batches)

    @property
    def new_rows(self) -> int:
        """Logs the committed batches newly stored (neither rejected nor stored before)."""
        return sum(int(e["new"]) for e in self.batches)

    @property
    def duplicates(self) -> int:
        return sum(int(e["duplicates"]) for e in self.batches)

    @property
    def max_outstanding_seen(self) -> int:
        return max((int(e["outstanding"]) for e in self.events("pulled")), default=0)

    def errors(self) -> list[Event]:
        """Lines logged at level error or above (tracebacks are logged as errors too)."""
        return [e for e in self.events() if e.get("level") in {"error", "critical"}]

    def tail(self, lines: int = 40) -> str:
        """The end of its stdout and stderr, for failure messages."""

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

    # --- waiting for log lines ---------------------------------------------------------------

    def _event_polls(
        self, name: str, count: int, timeout: float, where: Callable[[Event], bool]
    ) -> Generator[float, None, list[Event]]:
        def found() -> list[Event] | None:
            hits = [event for event in self.events(name) if where(event)]
            if len(hits) >= count:
                return hits
            if not self.alive:
                raise MonitorError(f"{self.name} exited waiting for {name!r}\n{self.tail()}")
            return None

        return _polls(
            found,
            timeout,
            lambda: f"{self.name}: not {count} x {name!r} within {timeout:g} s\n{self.tail()}",
        )

    async def wait_for(
        self,
        name: str,
        count: int = 1,
        timeout: float = 60.0,  # noqa: ASYNC109  (a failure, not a cancel)
        where: Callable[[Event], bool] = lambda _event: True,
    ) -> list[Event]:
        """Until at least `count` lines of event `name` (matching `where`) were logged."""
        return await _await(self._event_polls(name, count, timeout, where))

    def wait_for_blocking(
        self,
        name: str,
        count: int = 1,
        timeout: float = 60.0,
        where: Callable[[Event], bool] = lambda _event: True,
    ) -> list[Event]:
        return _block(self._event_polls(name, count, timeout, where))

    async def wait_started(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Until this run (generation) logged "monitor started": it is subscribed."""
        await self.wait_for(STARTED, count=self.generation, timeout=timeout)

    def wait_started_blocking(self, timeout: float = 60.0) -> None:
        self.wait_for_blocking(STARTED, count=self.generation, timeout=timeout)


def _parse(line: bytes) -> Event:
    """A log line as a dict; a line cut by SIGKILL, or not JSON, stays visible as such."""
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if isinstance(event, dict):
        return event
    return {"event": "<unparsed>", "line": line.decode(errors="replace")}
