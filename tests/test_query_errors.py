"""How the query API fails, against a real MariaDB: alike on every endpoint, without leaking
the server's words, and without starving the pool.

A query is made slow for real, not by a mock: a second session holds `LOCK TABLES ... WRITE`
on the log tables, so every read of them waits on the server until API_QUERY_TIMEOUT
(MariaDB's max_statement_time) interrupts it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import pymysql
import pytest
import structlog

from lms.api.app import create_app
from lms.query.errors import DatabaseUnavailable
from lms.query.reader import LogReader
from lms.settings import Settings
from lms.store.migrations import Migrator
from tests.conftest import mysql_config
from tests.helpers import SettingsFactory, wait_until

pytestmark = pytest.mark.integration

QUERY_TIMEOUT = 0.2
"""A tiny API_QUERY_TIMEOUT: each locked-out query is interrupted by the server after it."""

QUERIES = [
    "/v1/logs",
    "/v1/logs?q=payment",  # the full-text probe: several statements
    "/v1/logs?trace_id=t-1",
    "/v1/services",
    "/v1/severity",
    "/v1/severity?bucket=day&service=api",
    "/v1/consistency",  # its own transaction (a consistent snapshot)
]


@asynccontextmanager
async def api(
    settings: Settings, reader: LogReader | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, reader)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        yield c


@contextmanager
def tables_locked(settings: Settings) -> Iterator[pymysql.Connection]:
    """The log tables write-locked by another session: every read of them waits."""
    conn = pymysql.connect(**mysql_config(), database=settings.mysql_database, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLES service_logs WRITE, service_severity WRITE")
        yield conn
    finally:
        conn.close()  # the locks go with the session


async def _lock_waits(settings: Settings) -> int:
    """Statements of the test's database waiting on the lock now (information_schema)."""
    conn = pymysql.connect(**mysql_config(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                " WHERE DB = %s AND STATE LIKE %s",
                (settings.mysql_database, "%lock%"),
            )
            return int(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
async def migrated(settings: SettingsFactory) -> Settings:
    base = settings(api_query_timeout=QUERY_TIMEOUT, api_ingest=False)
    await Migrator(base).migrate()
    return base


@pytest.mark.parametrize("path", QUERIES)
async def test_every_query_endpoint_answers_a_server_timeout_with_503(
    migrated: Settings, path: str
) -> None:
    """The same 503 and reason everywhere, and the one connection (API_POOL_SIZE=1) serves on:
    the server interrupted the statement, the session is in step."""
    reader = LogReader(migrated, pool_size=1, timeout=QUERY_TIMEOUT)
    async with api(migrated, reader) as client:
        assert (await client.get(path)).status_code == 200
        [(session,)] = await reader._fetch("SELECT CONNECTION_ID()", [])
        with tables_locked(migrated):
            response = await client.get(path)
        assert response.status_code == 503, response.text
        assert response.json() == {
            "detail": f"query took longer than {QUERY_TIMEOUT:g}s (API_QUERY_TIMEOUT);"
            " narrow it with more filters or a shorter time range"
        }
        assert (await client.get(path)).status_code == 200  # and serves again at once
        assert await reader._fetch("SELECT CONNECTION_ID()", []) == [(session,)]


async def test_a_server_timeout_keeps_the_connection_and_wakes_the_next_request(
    settings: SettingsFactory,
) -> None:
    """API_POOL_SIZE=1: a request waiting for the one connection gets it as soon as a
    timed-out query hands it back; it was closed before, so nobody woke the waiter, which
    then failed after its own timeout with "no database connection free"."""
    one = settings(api_query_timeout=1.0, api_pool_size=1, api_ingest=False)
    await Migrator(one).migrate()
    reader = LogReader(one, pool_size=1, timeout=1.0)
    async with api(one, reader) as client:
        [(connection_id,)] = await reader._fetch("SELECT CONNECTION_ID()", [])
        with tables_locked(one):
            slow = asyncio.create_task(client.get("/v1/services"))
            await wait_until(lambda: _lock_waits(one), message="the query waits on the lock")
            fast = asyncio.create_task(client.get("/readyz"))  # waits for the connection
            slow_answer = await slow
        assert slow_answer.status_code == 503
        assert "API_QUERY_TIMEOUT" in slow_answer.json()["detail"]
        fast_answer = await fast
        assert fast_answer.status_code == 200, fast_answer.text
        # The same session served on: a statement timeout leaves a connection in step.
        assert await reader._fetch("SELECT CONNECTION_ID()", []) == [(connection_id,)]


async def test_a_timeout_inside_the_snapshot_keeps_the_connection(migrated: Settings) -> None:
    """/v1/consistency's transaction is rolled back, not its connection thrown away."""
    async with LogReader(migrated, pool_size=1, timeout=QUERY_TIMEOUT) as reader:
        [(connection_id,)] = await reader._fetch("SELECT CONNECTION_ID()", [])
        with tables_locked(migrated), pytest.raises(DatabaseUnavailable, match="API_QUERY"):
            await reader.consistency()
        assert await reader._fetch("SELECT CONNECTION_ID()", []) == [(connection_id,)]
        assert (await reader.consistency()).consistent


async def test_a_wrong_password_is_logged_not_told(settings: SettingsFactory) -> None:
    """Neither /readyz nor a query tells a client the server's "Access denied for user
    'root'@'127.0.0.1'": they say what failed; the log says why, for the operator."""
    wrong = settings(mysql_password=f"wrong-{secrets.token_hex(6)}", api_ingest=False)
    with structlog.testing.capture_logs() as events:
        async with api(wrong) as client:
            answers = {path: await client.get(path) for path in ("/readyz", "/v1/services")}
    for path, response in answers.items():
        assert response.status_code == 503, (path, response.text)
        assert response.json() == {"detail": "cannot connect to the database"}, path
        assert "denied" not in response.text
        assert wrong.mysql_user not in response.text
    logged = [e for e in events if e["event"] == "database unavailable"]
    assert {e["path"] for e in logged} == {"/readyz", "/v1/services"}
    assert all("Access denied for user" in e["detail"] for e in logged)


async def test_a_missing_schema_names_the_fix_not_the_table(settings: SettingsFactory) -> None:
    unmigrated = settings(api_ingest=False)
    with structlog.testing.capture_logs() as events:
        async with api(unmigrated) as client:
            response = await client.get("/v1/services")
    assert response.status_code == 503
    assert response.json() == {"detail": "the schema is not up to date; run `lms migrate`"}
    assert any("service_severity" in (e.get("detail") or "") for e in events)


async def test_a_cancelled_query_frees_its_place_in_the_pool_at_once(migrated: Settings) -> None:
    """A query cancelled mid-answer (its client went away) leaves its connection in an
    unknown state: it is closed, and the request waiting for the pool must still be woken
    to open a new one, not sleep until its own timeout ("no database connection free")."""
    async with LogReader(migrated, pool_size=1, timeout=3.0) as reader:
        await reader.ping()
        with tables_locked(migrated):
            slow = asyncio.create_task(reader.services())
            await wait_until(lambda: _lock_waits(migrated), message="the query waits on the lock")
            waiting = asyncio.create_task(reader.ping())
            await asyncio.sleep(0)  # let it reach the pool
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            await waiting  # raised DatabaseUnavailable before, once its own timeout passed
