"""Shared fixtures: a real Pub/Sub emulator, a throwaway MariaDB database, and Settings for both.

* `pubsub_emulator` (session): "host:port" of the emulator. Uses $PUBSUB_EMULATOR_HOST if set,
  otherwise starts one (lms.devtools.emulator: a free port, its own process group, stopped at
  the end); each pytest-xdist worker has its own.
* `mysql_database` (per test): name of a fresh `lms_test_<hex>` database, dropped afterwards.
* `settings` (per test): a factory `settings(**overrides) -> Settings` pointing at both, with a
  topic and subscription unique to the test (every call in one test shares them).

Helpers for integration tests (publish, make_log, db_query, wait_until, ...) are in
`tests/helpers.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pymysql
import pytest

from lms.devtools.emulator import running_emulator
from lms.settings import Settings, load_settings
from lms.store.migrations import Migrator
from lms.store.writer import StoredLog
from tests.helpers import SettingsFactory, store_with_redeliveries
from tests.proxy import tcp_proxy  # noqa: F401  (the fault-injection TCP proxy fixture)

TEST_PROJECT = "lms-test"


# Tests write nothing into the repository: hypothesis keeps its failing examples (retried
# first by the next run on this machine) and caches in the temporary directory instead.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "lms-hypothesis")
)
# Property tests must not fail on a slow CI machine just because one example took > 200 ms.
hypothesis.settings.register_profile("lms", deadline=None, print_blob=True)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lms"))


def pytest_configure(config: pytest.Config) -> None:
    # Notes MySQL sends for `CREATE ... IF NOT EXISTS` on an existing object (migrate re-runs).
    config.addinivalue_line("filterwarnings", r"ignore:Can't create database '.*'; database exists")
    config.addinivalue_line("filterwarnings", r"ignore:Table '.*' already exists")


# --- Pub/Sub emulator ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a Pub/Sub emulator; PUBSUB_EMULATOR_HOST is set for the whole session."""
    existing = os.environ.get("PUBSUB_EMULATOR_HOST")
    if existing:
        yield existing
        return
    log_path = tmp_path_factory.mktemp("pubsub-emulator") / "emulator.log"
    with running_emulator(log_path) as emulator:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        try:
            yield emulator.host
        finally:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)


# --- MariaDB / MySQL -----------------------------------------------------------------------


def mysql_config() -> dict[str, Any]:
    """Where the test server is: 127.0.0.1:3306 as root without password unless MYSQL_* say."""
    return {
        "host": os.environ.get("MYSQL_HOST", "127.0.0.1"),
        "port": int(os.environ.get("MYSQL_PORT", "3306")),
        "user": os.environ.get("MYSQL_USER", "root"),
        "password": os.environ.get("MYSQL_PASSWORD", ""),
    }


def query_settings(database: str) -> Settings:
    """Settings of a query-only `lms api` (no publisher) on `database` of the test server,
    made-up hosts allowed (http://test), for tests that seed a database of their own."""
    config = mysql_config()
    return load_settings(
        _env_file=None,
        mysql_host=config["host"],
        mysql_port=config["port"],
        mysql_user=config["user"],
        mysql_password=config["password"],
        mysql_database=database,
        api_allowed_hosts="*",
        api_ingest=False,
    )


@contextlib.contextmanager
def seeded_query_database(prefix: str, logs: Callable[[], Sequence[StoredLog]]) -> Iterator[str]:
    """A fresh `<prefix><hex>` database, migrated and filled with `logs()` by the real writer
    (every batch redelivered, two replicas racing: tests.helpers.store_with_redeliveries), for
    the read side's oracle tests; dropped afterwards."""
    name = prefix + secrets.token_hex(5)
    _admin_execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        settings = query_settings(name)
        asyncio.run(Migrator(settings).migrate())
        asyncio.run(store_with_redeliveries(settings, logs()))
        yield name
    finally:
        _admin_execute(f"DROP DATABASE IF EXISTS `{name}`")


@contextlib.asynccontextmanager
async def query_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process `lms api` app of `settings` (its lifespan run) and a client of it."""
    from lms.api.app import create_app  # FastAPI loads only for the tests that use it

    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        yield c


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
        # In-process HTTP clients call made-up hosts (http://lms, http://test); the Host check
        # of lms api has its own tests (tests/test_api_access.py).
        "api_allowed_hosts": "*",
    }

    def make(**overrides: object) -> Settings:
        return load_settings(**{**base, **overrides})

    return make
