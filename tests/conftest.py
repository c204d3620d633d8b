"""Shared fixtures: a real Pub/Sub emulator, a throwaway MariaDB database, and Settings for both.

* `pubsub_emulator` (session): "host:port" of the emulator. Uses $PUBSUB_EMULATOR_HOST if set,
  otherwise starts the installed emulator on a free port and kills its process group at the end.
* `mysql_database` (per test): name of a fresh `lms_test_<hex>` database, dropped afterwards.
* `settings` (per test): a factory `settings(**overrides) -> Settings` pointing at both, with a
  topic and subscription unique to the test (every call in one test shares them).

Helpers for integration tests (publish, make_log, db_query, wait_until, ...) are in
`tests/helpers.py`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pymysql
import pytest

from lms.settings import Settings, load_settings
from tests.helpers import SettingsFactory
from tests.proxy import tcp_proxy  # noqa: F401  (the fault-injection TCP proxy fixture)

EMULATOR_BIN = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
EMULATOR_START_TIMEOUT = 60.0
EMULATOR_READY_LINE = "Server started"
TEST_PROJECT = "lms-test"


# Property tests must not fail on a slow CI machine just because one example took > 200 ms.
hypothesis.settings.register_profile("lms", deadline=None, print_blob=True)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lms"))


def pytest_configure(config: pytest.Config) -> None:
    # Notes MySQL sends for `CREATE ... IF NOT EXISTS` on an existing object (migrate re-runs).
    config.addinivalue_line("filterwarnings", r"ignore:Can't create database '.*'; database exists")
    config.addinivalue_line("filterwarnings", r"ignore:Table '.*' already exists")


# --- Pub/Sub emulator ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the emulator's whole process group (the JVM included), then SIGKILL leftovers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _start_emulator(log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start the emulator and wait until it listens and says so; raise with the log otherwise."""
    port = _free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(EMULATOR_BIN), "--host=127.0.0.1", f"--port={port}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"Pub/Sub emulator exited with code {proc.returncode} before it was ready;"
                    f" log {log_path}:\n{_tail(log_path)}"
                )
            started = EMULATOR_READY_LINE in log_path.read_text(encoding="utf-8", errors="replace")
            if started and _accepts_connections(port):
                return proc, port
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Pub/Sub emulator not ready on port {port} after"
                    f" {EMULATOR_START_TIMEOUT:g}s; log {log_path}:\n{_tail(log_path)}"
                )
            time.sleep(0.1)
    except BaseException:
        _kill_group(proc)
        raise


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """host:port of a Pub/Sub emulator; PUBSUB_EMULATOR_HOST is set for the whole session."""
    existing = os.environ.get("PUBSUB_EMULATOR_HOST")
    if existing:
        yield existing
        return
    if not EMULATOR_BIN.exists():
        raise RuntimeError(f"PUBSUB_EMULATOR_HOST is unset and {EMULATOR_BIN} does not exist")
    fd, name = tempfile.mkstemp(prefix="lms-pubsub-emulator-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    proc, port = _start_emulator(log_path)
    host = f"127.0.0.1:{port}"
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        yield host
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        _kill_group(proc)
        log_path.unlink(missing_ok=True)


# --- MariaDB / MySQL -----------------------------------------------------------------------


def mysql_config() -> dict[str, Any]:
    """Where the test server is: 127.0.0.1:3306 as root without password unless MYSQL_* say."""
    return {
        "host": os.environ.get("MYSQL_HOST", "127.0.0.1"),
        "port": int(os.environ.get("MYSQL_PORT", "3306")),
        "user": os.environ.get("MYSQL_USER", "root"),
        "password": os.environ.get("MYSQL_PASSWORD", ""),
    }


def _admin_execute(sql: str) -> None:
    config = mysql_config()
    try:
        conn = pymysql.connect(**config, charset="utf8mb4", connect_timeout=10, autocommit=True)
    except pymysql.err.OperationalError as exc:
        raise RuntimeError(
            f"cannot reach MySQL at {config['host']}:{config['port']} as {config['user']!r}"
            f" (set MYSQL_HOST/MYSQL_PORT/MYSQL_USER/MYSQL_PASSWORD): {exc}"
        ) from exc
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def mysql_database() -> Iterator[str]:
    """A fresh, empty `lms_test_<hex>` database for one test; dropped afterwards."""
    name = f"lms_test_{secrets.token_hex(6)}"
    _admin_execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        yield name
    finally:
        _admin_execute(f"DROP DATABASE IF EXISTS `{name}`")


# --- Settings ------------------------------------------------------------------------------


@pytest.fixture
def settings(pubsub_emulator: str, mysql_database: str) -> SettingsFactory:
    """`settings(**overrides) -> Settings` for this test's topic, subscription and database.

    The topic (`t-<hex>`) and subscription (`s-<hex>`) are unique per test and shared by every
    call within it, so e.g. a publisher and two monitors of one test meet on the same topic.
    `.env` is ignored; keyword overrides (batchsize=..., flushinterval=...) win over all.
    """
    suffix = secrets.token_hex(6)
    mysql = mysql_config()
    base: dict[str, object] = {
        "_env_file": None,
        "pubsub_emulator_host": pubsub_emulator,
        "pubsub_project": TEST_PROJECT,
        "pubsub_topic": f"t-{suffix}",
        "pubsub_subscription": f"s-{suffix}",
        "mysql_host": mysql["host"],
        "mysql_port": mysql["port"],
        "mysql_user": mysql["user"],
        "mysql_password": mysql["password"],
        "mysql_database": mysql_database,
        # No metrics/health server unless a test asks: in-process monitors would share a port.
        "metrics_port": 0,
    }

    def make(**overrides: object) -> Settings:
        return load_settings(**{**base, **overrides})

    return make
