"""The schema: numbered SQL files shipped inside the package (`lms/store/sql/`), applied once
each, in order, and recorded in `schema_migrations`.

They are package data, read through importlib.resources, so an installed wheel migrates
exactly as a checkout does; a package without them is an error, never "up to date".
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from importlib.resources.abc import Traversable

import aiomysql
import pymysql
import structlog

from lms.settings import Settings
from lms.store.connection import connect
from lms.store.errors import DATABASE_ERRORS, TerminalStorageError, classify, error_code

log = structlog.get_logger(__name__)

MIGRATIONS: Traversable = files("lms.store") / "sql"
LOCK_SECONDS = 60

# DDL commits statement by statement, so a migration interrupted half-way (lms mon killed
# during start-up) is re-run from its first statement next time. A statement whose effect is
# already there then fails with one of these: table exists, duplicate column, duplicate key
# name, can't DROP a missing column or key. Skipping it lets the rest of the file run;
# otherwise every later start-up would fail on it forever. (Each ALTER is atomic.)
_ALREADY_APPLIED = frozenset({1050, 1060, 1061, 1091})
_UNKNOWN_DATABASE = 1049
_NO_SUCH_TABLE = 1146
_DENIED = frozenset({1044, 1142, 1143})
"""Access denied to the database, to a table (command denied), to a column."""


def migration_files(directory: Traversable = MIGRATIONS) -> list[Traversable]:
    """The numbered `.sql` files of `directory`, in the order they apply."""
    if not directory.is_dir():
        return []
    return sorted(
        (item for item in directory.iterdir() if item.name.endswith(".sql")),
        key=lambda item: item.name,
    )


class Migrator:
    """Creates the database if missing and applies the migrations not applied yet."""

    def __init__(self, settings: Settings, directory: Traversable = MIGRATIONS) -> None:
        self._settings = settings
        self._directory = directory

    async def migrate(self) -> list[str]:
        """Apply the files not applied yet; returns their names.

        An up-to-date schema is recognised by reading `schema_migrations` alone, so a user
        with no DDL rights (`lms mon`'s own, README "Database users") starts without error;
        only when a migration is pending is anything created. A named lock serialises
        replicas starting together, so each file runs exactly once. Raises StorageError
        (retriable or terminal, see lms.store.errors); a pending migration that this user may
        not apply is terminal and says so.
        """
        scripts = migration_files(self._directory)
        if not scripts:
            raise TerminalStorageError(
                f"no migrations found in {self._directory}: the lms package is incomplete"
            )
        pending: list[str] = []
        try:
            pending = await self._pending(scripts)
            if not pending:
                return []
            await self._ensure_database()
            conn = await connect(self._settings, self._settings.mysql_database)
            try:
                return await self._apply(conn, scripts)
            finally:
                conn.close()
        except DATABASE_ERRORS as exc:
            if pending and error_code(exc) in _DENIED:
                raise TerminalStorageError(
                    f"migration failed: {len(pending)} migration(s) pending ({pending[0]} ...),"
                    f" which MYSQL_USER {self._settings.mysql_user!r} may not apply: run"
                    f" `lms migrate` as a user with DDL rights: {exc}",
                    error_code(exc),
                ) from exc
            raise classify(exc, "migration") from exc

    async def _pending(self, scripts: list[Traversable]) -> list[str]:
        """The names of `scripts` not recorded as applied: all of them when the database or
        `schema_migrations` does not exist yet. Reads only, without the lock: migrations are
        only ever added, so a schema seen complete stays complete."""
        names = [script.name for script in scripts]
        try:
            conn = await connect(self._settings, self._settings.mysql_database)
        except pymysql.err.OperationalError as exc:
            if error_code(exc) == _UNKNOWN_DATABASE:
                return names
            raise
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in await cur.fetchall()}
        except pymysql.err.ProgrammingError as exc:
            if error_code(exc) == _NO_SUCH_TABLE:
                return names
            raise
        finally:
            conn.close()
        return [name for name in names if name not in done]

    async def applied_at(self, version: str) -> float | None:
        """When migration `version` was applied (Unix seconds), None if it was not.

        UNIX_TIMESTAMP reads applied_at in the session's time zone, the one it was written
        in, so the answer does not depend on the server's zone.
        """
        try:
            conn = await connect(self._settings, self._settings.mysql_database)
            try:
                async with conn.cursor() as cur:
                    await cur.execute(
                        "SELECT UNIX_TIMESTAMP(applied_at) FROM schema_migrations"
                        " WHERE version = %s",
                        (version,),
                    )
                    row = await cur.fetchone()
            finally:
                conn.close()
        except DATABASE_ERRORS as exc:
            raise classify(exc, "reading schema_migrations") from exc
        return None if row is None else float(row[0])

    async def _ensure_database(self) -> None:
        """Create the database if missing; the name is validated by Settings, hence quoted."""
        conn = await connect(self._settings, None)
        try:
            async with conn.cursor() as cur:
                await cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{self._settings.mysql_database}`"
                    " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
        finally:
            conn.close()

    async def _apply(self, conn: aiomysql.Connection, scripts: list[Traversable]) -> list[str]:
        applied: list[str] = []
        async with conn.cursor() as cur:
            await cur.execute("SELECT GET_LOCK('lms_migrate', %s)", (LOCK_SECONDS,))
            (locked,) = await cur.fetchone()
            if locked != 1:
                raise TimeoutError(f"another process held the migration lock for {LOCK_SECONDS} s")
            try:
                await cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version VARCHAR(255) NOT NULL PRIMARY KEY,"
                    " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
                )
                await cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in await cur.fetchall()}
                for script in scripts:
                    if script.name in done:
                        continue
                    for statement in _statements(script.read_text(encoding="utf-8")):
                        await _execute_ddl(cur, statement, script.name)
                    await cur.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (script.name,)
                    )
                    await conn.commit()
                    applied.append(script.name)
            finally:
                await cur.execute("SELECT RELEASE_LOCK('lms_migrate')")
        return applied


async def _execute_ddl(cur: aiomysql.Cursor, statement: str, migration: str) -> None:
    try:
        await cur.execute(statement)
    except pymysql.err.MySQLError as exc:
        if not exc.args or exc.args[0] not in _ALREADY_APPLIED:
            raise
        log.warning(
            "migration statement already applied (an earlier run was interrupted); skipped",
            migration=migration,
            error=str(exc),
        )


def _statements(script: str) -> Iterable[str]:
    """Split a migration into statements; migrations keep to one `;` per statement end."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
