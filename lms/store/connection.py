"""Connecting to MySQL/MariaDB: the one place every part (writer, reader, migrations, tests,
benchmarks) opens a connection, so none can hang on a server that never answers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomysql

from lms.settings import Settings

CONNECT_TIMEOUT = 10.0
"""Seconds a connection, handshake included, may take at most (less when DB_TIMEOUT is less)."""


class QuietCursor(aiomysql.Cursor):
    """A cursor that skips SHOW WARNINGS: fetching warnings would cost a round trip per
    statement on the hot path, and the writer needs none (its strict SQL mode turns every
    value the database would alter into an error)."""

    async def _show_warnings(self, conn: aiomysql.Connection) -> None:
        return None


def connect_kwargs(settings: Settings, database: str | None) -> dict[str, Any]:
    """aiomysql arguments for `settings`' server; `database` None connects to none."""
    return {
        "host": settings.mysql_host,
        "port": settings.mysql_port,
        "user": settings.mysql_user,
        "password": settings.mysql_password,
        "db": database,
        "charset": "utf8mb4",
        "autocommit": False,
        "connect_timeout": connect_timeout(settings),
        "cursorclass": QuietCursor,
    }


def connect_timeout(settings: Settings, limit: float | None = None) -> float:
    """The bound on one connection attempt: DB_TIMEOUT, at most CONNECT_TIMEOUT (or `limit`)."""
    return min(settings.db_timeout, CONNECT_TIMEOUT if limit is None else limit)


async def connect(
    settings: Settings,
    database: str | None,
    *,
    within: float | None = None,
    **overrides: Any,
) -> aiomysql.Connection:
    """Connect within `within` seconds (default `connect_timeout`), handshake included.

    aiomysql's connect_timeout bounds only the TCP connect: a server that accepts and never
    answers (a hung server, a network dropping packets) would otherwise hang the caller
    forever, silently, instead of failing with an error that can be retried.
    """
    bound = connect_timeout(settings) if within is None else within
    kwargs = {**connect_kwargs(settings, database), "connect_timeout": bound, **overrides}
    try:
        async with asyncio.timeout(bound):
            return await aiomysql.connect(**kwargs)
    except TimeoutError:
        raise TimeoutError(
            f"no answer from MySQL at {settings.mysql_host}:{settings.mysql_port}"
            f" within {bound:g} s"
        ) from None
