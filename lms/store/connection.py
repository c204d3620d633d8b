"""Connecting to MySQL/MariaDB: the one place every part (writer, reader, migrations, tests,
benchmarks) opens a connection, so none can hang on a server that never answers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomysql
from pymysql.constants.SERVER_STATUS import (
    SERVER_STATUS_NO_BACKSLASH_ESCAPES as NO_BACKSLASH_ESCAPES,
)

from lms.settings import Settings

CONNECT_TIMEOUT = 10.0
"""Seconds a connection, handshake included, may take at most (less when DB_TIMEOUT is less)."""


class QuietCursor(aiomysql.Cursor):
    """A cursor that skips SHOW WARNINGS: aiomysql would fetch them after every statement
    that has any, only to turn them into Python warnings nobody reads."""

    async def _show_warnings(self, conn: aiomysql.Connection) -> None:
        return None


DUPLICATE_ENTRY = 1062
"""The warning of a row INSERT IGNORE skipped because its key is stored already."""


_ESCAPES = (
    ("\\", "\\\\"),  # first: the escapes below add backslashes of their own
    ("\0", "\\0"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\032", "\\Z"),
    ('"', '\\"'),
    ("'", "\\'"),
)
"""What PyMySQL's escape_string replaces, and with what (pymysql.converters._escape_table)."""


def quote_string(value: str) -> str:
    """`value` as a quoted SQL string literal, exactly PyMySQL's "'" + escape_string(value) + "'"
    (backslash escapes, the server's default mode).

    PyMySQL's str.translate with a table of 2-character replacements goes through its slow
    per-character path: ~20 µs for a 1,000-character payload, the largest single cost of the
    writer per row. A containment test per special character (a fast search in C) and
    str.replace for the few present cost well under a microsecond for the same payload."""
    for char, escaped in _ESCAPES:
        if char in value:
            value = value.replace(char, escaped)
    return "'" + value + "'"


class FastEscapeCursor(aiomysql.Cursor):
    """Escapes the values of the writer's rows (str, int, None; anything else as the driver
    does) with quote_string: the same SQL text as aiomysql's own escaping, built faster. Under
    NO_BACKSLASH_ESCAPES (which the writer never sets) it leaves everything to the driver."""

    def _escape_args(self, args: Any, conn: aiomysql.Connection) -> Any:
        if type(args) is not tuple or conn.server_status & NO_BACKSLASH_ESCAPES:
            return super()._escape_args(args, conn)
        literals: list[str] = []
        for value in args:
            kind = type(value)
            if kind is str:
                literals.append(quote_string(value))
            elif value is None:
                literals.append("NULL")
            elif kind is int:
                literals.append(str(value))  # PyMySQL's escape_int
            else:
                literals.append(conn.escape(value))
        return tuple(literals)


class WarningCountingCursor(FastEscapeCursor):
    """Counts the warnings of its statements and keeps the first that is not a duplicate key,
    so the writer can tell "a duplicate was skipped" (the one thing INSERT IGNORE may do to a
    row) from "a value was altered" (never allowed). `reset` before each statement."""

    warnings = 0
    altered: tuple[int, str] | None = None
    """(code, message) of the first warning that is not DUPLICATE_ENTRY."""

    def reset(self) -> None:
        self.warnings, self.altered = 0, None

    async def _show_warnings(self, conn: aiomysql.Connection) -> None:
        # Called by aiomysql after each statement that has warnings (each chunk of an
        # executemany), and only then: a batch without duplicates costs no round trip.
        self.warnings += self._result.warning_count
        if self.altered is None:
            for _level, code, message in await conn.show_warnings() or ():
                if int(code) != DUPLICATE_ENTRY:
                    self.altered = (int(code), str(message))
                    break


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
