"""Blocking MySQL connections for the scripts around LMS: seeding, benchmarks, `make run`.

Those scripts create, fill and drop whole databases between steps that are not on an event
loop, so they use PyMySQL directly; the server and credentials still come from `Settings`
(MYSQL_* variables), like everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

import pymysql

from lms.settings import Settings
from lms.store.connection import connect_timeout


def connect_blocking(
    settings: Settings, database: str | None = None, autocommit: bool = True
) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    """A connection to `settings`' server, to `database` (None: to none, for DDL)."""
    return pymysql.connect(
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.mysql_password,
        database=database,
        charset="utf8mb4",
        autocommit=autocommit,
        connect_timeout=connect_timeout(settings),
    )


def drop_databases(settings: Settings, names: Iterable[str]) -> None:
    """Drop each of `names` that exists."""
    conn = connect_blocking(settings)
    try:
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()
