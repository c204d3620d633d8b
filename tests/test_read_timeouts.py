"""The read side never hangs on a database that accepts connections and never answers.

A blackholed proxy (tests/proxy.py) stands between each front end and MariaDB: `LogReader`
itself, `lms logs`, `lms stats` and `lms api` must each give up within a bound derived from
API_QUERY_TIMEOUT (here 1 s) and say why, instead of hanging (before the one connection module,
`LogReader.services()` still hung after 40 s).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lms.devtools.monitor_process import child_environment
from lms.devtools.ports import free_port
from lms.query.errors import DatabaseUnavailable
from lms.query.reader import LogReader
from lms.settings import Settings
from lms.store.migrations import Migrator
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

LMS = str(Path(sys.executable).with_name("lms"))
QUERY_TIMEOUT = 1.0
BOUND = 15.0
"""Seconds within which every front end must have given up (a generous multiple of 1 s)."""


def _env(settings: Settings) -> dict[str, str]:
    return child_environment(settings)


@pytest.fixture
async def blackholed(settings, tcp_proxy) -> Settings:
    """Settings whose MySQL port is a proxy that swallows every byte, schema in place."""
    base = settings()
    await Migrator(base).migrate()
    proxy = await tcp_proxy(base.mysql_host, base.mysql_port)
    await proxy.blackhole()
    return settings(mysql_port=proxy.port, api_query_timeout=QUERY_TIMEOUT)


async def test_log_reader_gives_up_on_a_blackholed_database(blackholed: Settings) -> None:
    started = time.monotonic()
    async with LogReader(blackholed, pool_size=1, timeout=QUERY_TIMEOUT) as reader:
        with pytest.raises(DatabaseUnavailable, match="cannot connect"):
            await reader.services()
    assert time.monotonic() - started < BOUND


@pytest.mark.parametrize("command", [["logs"], ["stats"]])
async def test_cli_exits_1_on_a_blackholed_database(
    blackholed: Settings, command: list[str], tmp_path: Path
) -> None:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        LMS,
        *command,
        env=_env(blackholed),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), BOUND)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1, stderr.decode()
    assert f"lms {command[0]}: cannot connect to the database" in stderr.decode()
    assert time.monotonic() - started < BOUND


async def test_api_answers_503_on_a_blackholed_database(
    blackholed: Settings, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as output:
        proc = await asyncio.create_subprocess_exec(
            LMS,
            "api",
            "--port",
            str(port),
            env=_env(blackholed),
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=BOUND) as c:

            async def serving() -> bool:
                assert proc.returncode is None, log_path.read_text()
                try:
                    return (await c.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(serving, timeout=30, interval=0.05, message="lms api serving")
            started = time.monotonic()
            response = await c.get("/v1/services")
            assert time.monotonic() - started < BOUND
            assert response.status_code == 503
            assert "cannot connect to the database" in response.json()["detail"]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
