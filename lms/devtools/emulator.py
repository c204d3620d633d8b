"""The Google Cloud Pub/Sub emulator, started and stopped for tests, benchmarks and `make`.

One launcher for every caller, because the emulator is easy to leak: its start script execs a
JVM that outlives whoever forgot it, keeps gigabytes of messages and holds its port. So it is
always started on a free port as the leader of its own process group, counted as started only
once it says "Server started" *and* accepts connections (the line comes first), and stopped by
signalling that whole group: SIGTERM, then SIGKILL for what is still there.

    python -m lms.devtools.emulator start    start one in the background; print its host:port
    python -m lms.devtools.emulator stop     stop it (its whole process group)
    python -m lms.devtools.emulator status   say whether it runs, and where
    python -m lms.devtools.emulator host     print its host:port (for PUBSUB_EMULATOR_HOST)

The command line keeps its state in $EMULATOR_RUN_DIR (default `.run/`): `emulator.pid` (the
process group id), `emulator.host` and `emulator.log`. EMULATOR_BIN, EMULATOR_PORT and
EMULATOR_START_TIMEOUT override the binary, the port and the start-up bound.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lms.devtools.ports import LOCALHOST, accepts_connections, free_port

DEFAULT_BINARY = Path(
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
)
READY_LINE = "Server started"
BIND_FAILURES = ("BindException", "Address already in use")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3
"""Free ports tried when another process takes the chosen one before the emulator binds it."""
_POLL = 0.1


class EmulatorError(RuntimeError):
    """The emulator is missing, did not start, or its state files say nothing usable."""


def emulator_binary() -> Path:
    """$EMULATOR_BIN, else where the Debian package google-cloud-cli-pubsub-emulator puts it."""
    return Path(os.environ.get("EMULATOR_BIN") or DEFAULT_BINARY)


@dataclass
class Emulator:
    """A running emulator: the leader of process group `pgid`, serving on `port`."""

    pgid: int
    port: int
    log_path: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    """Set when this process started it, so that stopping it also reaps it."""

    @property
    def host(self) -> str:
        """What PUBSUB_EMULATOR_HOST must say to reach it."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def alive(self) -> bool:
        if self._process is not None:
            self._process.poll()  # a leader that exited and is not reaped yet looks alive
        return group_alive(self.pgid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the whole group, SIGKILL what is left after `timeout` seconds."""
        reap = self._process.poll if self._process is not None else None
        stop_group(self.pgid, timeout, reap)


def group_alive(pgid: int) -> bool:
    """Whether process group `pgid` still has a member (a zombie one counts until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(
    pgid: int, timeout: float = STOP_TIMEOUT, reap: Callable[[], object] | None = None
) -> None:
    """SIGTERM process group `pgid`, wait up to `timeout` s for it to go, then SIGKILL it.

    `reap` (the leader's `Popen.poll`, when the caller is its parent) runs while waiting:
    an unreaped leader would stay in the group as a zombie and look alive.
    """
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if reap is not None:
                reap()
            if not group_alive(pgid):
                return
            time.sleep(_POLL)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _launch(binary: Path, port: int, log_path: Path, timeout: float) -> Emulator | None:
    """One start on `port`: the emulator once it serves, None if the port was taken."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), f"--host={LOCALHOST}", f"--port={port}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # it leads its own group: stopping it stops its JVM
        )
    emulator = Emulator(process.pid, port, log_path, process)
    deadline = time.monotonic() + timeout
    try:
        while True:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            if READY_LINE in text and accepts_connections(port):
                return emulator
            if any(failure in text for failure in BIND_FAILURES):
                emulator.stop()
                return None
            if process.poll() is not None:
                raise EmulatorError(
                    f"the Pub/Sub emulator exited with code {process.returncode} before it was"
                    f" ready; its log {log_path}:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise EmulatorError(
                    f"the Pub/Sub emulator was not ready on port {port} after {timeout:g} s;"
                    f" its log {log_path}:\n{_tail(log_path)}"
                )
            time.sleep(_POLL)
    except BaseException:
        emulator.stop()
        raise


def start_emulator(
    log_path: Path,
    port: int | None = None,
    timeout: float = START_TIMEOUT,
    binary: Path | None = None,
) -> Emulator:
    """Start an emulator on `port` (default: a free one) and return once it serves.

    Raises EmulatorError with the end of its log if it is not installed, exits early or is not
    serving within `timeout` seconds; nothing is left running then.
    """
    binary = binary or emulator_binary()
    if not binary.exists():
        raise EmulatorError(
            f"the Pub/Sub emulator is not installed: {binary}"
            " (Debian package google-cloud-cli-pubsub-emulator, or set EMULATOR_BIN)"
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else PORT_ATTEMPTS
    for _ in range(attempts):
        emulator = _launch(binary, port or free_port(), log_path, timeout)
        if emulator is not None:
            return emulator
    raise EmulatorError(
        f"the Pub/Sub emulator could not listen (port taken?); its log {log_path}:\n"
        f"{_tail(log_path)}"
    )


@contextlib.contextmanager
def running_emulator(log_path: Path, timeout: float = START_TIMEOUT) -> Iterator[Emulator]:
    """An emulator for the duration of a `with` block, stopped however the block ends."""
    emulator = start_emulator(log_path, timeout=timeout)
    try:
        yield emulator
    finally:
        emulator.stop()


# --- the command line: an emulator that outlives the command that started it ---------------


@dataclass(frozen=True)
class StateDir:
    """Where `start` records the emulator for a later `stop`, `status` or `host`."""

    path: Path

    @property
    def pid_file(self) -> Path:
        return self.path / "emulator.pid"

    @property
    def host_file(self) -> Path:
        return self.path / "emulator.host"

    @property
    def log_file(self) -> Path:
        return self.path / "emulator.log"

    def running(self) -> Emulator | None:
        """The recorded emulator if its process group is still there."""
        try:
            pgid = int(self.pid_file.read_text(encoding="utf-8").strip())
            host = self.host_file.read_text(encoding="utf-8").strip()
            port = int(host.rpartition(":")[2])
        except (OSError, ValueError):
            return None
        emulator = Emulator(pgid, port, self.log_file)
        return emulator if emulator.alive and _is_emulator(pgid) else None

    def record(self, emulator: Emulator) -> None:
        self.pid_file.write_text(f"{emulator.pgid}\n", encoding="utf-8")
        self.host_file.write_text(f"{emulator.host}\n", encoding="utf-8")

    def forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        self.host_file.unlink(missing_ok=True)


def _is_emulator(pid: int) -> bool:
    """Whether `pid` still runs the emulator: after a reboot a stale pid file may name an
    unrelated process group, which `stop` must not signal. True where /proc cannot tell."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return b"pubsub" in command.lower()


def _say(message: str) -> None:
    print(f"emulator: {message}", file=sys.stderr, flush=True)


def _start(state: StateDir) -> int:
    running = state.running()
    if running is not None:
        _say(f"already running at {running.host} (pgid {running.pgid})")
        print(running.host)
        return 0
    state.path.mkdir(parents=True, exist_ok=True)
    state.forget()
    port_text = os.environ.get("EMULATOR_PORT")
    timeout_text = os.environ.get("EMULATOR_START_TIMEOUT")
    try:
        emulator = start_emulator(
            state.log_file,
            port=int(port_text) if port_text else None,
            timeout=float(timeout_text) if timeout_text else START_TIMEOUT,
        )
    except (EmulatorError, ValueError) as exc:
        _say(str(exc))
        return 1
    state.record(emulator)
    _say(f"started at {emulator.host} (pgid {emulator.pgid}, log {state.log_file})")
    print(emulator.host)
    return 0


def _stop(state: StateDir) -> int:
    running = state.running()
    if running is not None:
        running.stop()
    state.forget()
    _say("not running" if running is None else f"stopped (pgid {running.pgid})")
    return 0


def _status(state: StateDir) -> int:
    running = state.running()
    print("not running" if running is None else f"running at {running.host} (pgid {running.pgid})")
    return 1 if running is None else 0


def _host(state: StateDir) -> int:
    running = state.running()
    if running is None:
        _say("not running")
        return 1
    print(running.host)
    return 0


COMMANDS: dict[str, Callable[[StateDir], int]] = {
    "start": _start,
    "stop": _stop,
    "status": _status,
    "host": _host,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lms.devtools.emulator",
        description="Start and stop a background Pub/Sub emulator (state in $EMULATOR_RUN_DIR).",
    )
    parser.add_argument("command", choices=list(COMMANDS))
    args = parser.parse_args(argv)
    state = StateDir(Path(os.environ.get("EMULATOR_RUN_DIR") or ".run"))
    return COMMANDS[args.command](state)


if __name__ == "__main__":
    sys.exit(main())
