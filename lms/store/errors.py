"""Which database errors a retry can fix: one classification for the writer, the reader and
start-up, as aiokafka marks its errors `retriable`.

Retriable: the connection or the server's state (lost connection, timeout, deadlock, lock
wait, too many connections, a server shutting down); a fresh connection may succeed. Terminal:
the request itself (missing table or column, access denied, data the schema refuses); the
same request fails the same way however often it is sent, so it must not be retried forever.
Among the terminal errors, a data error (a value too long, out of range, not of its column's
type, a packet too large) is the fault of some rows, not of the schema or the connection: the
writer splits such a batch and keeps the rows the database refuses as rejected messages.
Classification is by error number, not by the driver's exception class, which is not reliable
for this (pymysql raises MariaDB's CHECK constraint failure as an OperationalError).
"""

from __future__ import annotations

import pymysql

RETRIABLE_CODES = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1152,  # aborted connection
        1158, 1159, 1160, 1161,  # network read/write errors and timeouts
        1205,  # lock wait timeout
        1213,  # deadlock
        1290,  # --read-only (a failover in progress)
        1317,  # query interrupted (KILL QUERY)
        1927,  # MariaDB: connection killed
        1969,  # MariaDB: max_statement_time exceeded
        3024,  # MySQL 8: max_execution_time exceeded
        4031,  # MySQL 8: disconnected by the server for inactivity
    }
)  # fmt: skip
"""Server error codes a retry on a fresh connection can fix. Client codes (2000-2999: cannot
connect, server gone away, lost connection) are all retriable."""

DATA_ERROR_CODES = frozenset(
    {
        1048,  # column cannot be null
        1153,  # packet bigger than max_allowed_packet: the same rows fail the same way
        1263,  # NULL supplied to a NOT NULL column
        1264,  # out of range value for a column
        1265,  # data truncated (an unknown ENUM value, in strict mode)
        1292,  # incorrect (truncated) value, e.g. a datetime
        1300,  # invalid character string
        1366,  # incorrect string value for the column's character set
        1367,  # illegal value for the column's type
        1406,  # data too long for a column
        1441,  # datetime function overflow
        1690,  # value out of range in an expression
        3140,  # MySQL 8: invalid JSON text
        3146,  # MySQL 8: invalid data type for JSON
        3819,  # MySQL 8: check constraint violated
        4025,  # MariaDB: CONSTRAINT failed (the json_valid CHECK of a JSON column)
    }
)  # fmt: skip
"""Server error codes caused by the values of some rows: a retry cannot fix them, storing the
other rows without them can."""


class StorageError(Exception):
    """The database failed; nothing of the attempted transaction was stored.

    `retriable` says whether the same call may succeed later, `data_error` whether the values
    of some rows are the cause; `code` is the MySQL error number, when there is one, and
    `reason` the database's own words.
    """

    retriable: bool = True
    data_error: bool = False

    def __init__(self, message: str, code: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or message


class RetriableStorageError(StorageError):
    """A connection, timeout or locking failure: retry with backoff."""

    retriable = True


class TerminalStorageError(StorageError):
    """The request cannot succeed as it is (schema, privileges, data): do not retry."""

    retriable = False


class DataStorageError(TerminalStorageError):
    """Some rows hold values the database refuses: do not retry, split."""

    data_error = True


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver error, if it carries one."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_retriable(exc: BaseException) -> bool:
    """Whether `exc`, raised by a database call, may go away on a fresh connection."""
    if isinstance(exc, StorageError):
        return exc.retriable
    if isinstance(exc, TimeoutError | OSError):
        return True
    if isinstance(exc, pymysql.err.InterfaceError):
        return True  # the connection was closed under the call
    code = error_code(exc)
    if code is None:
        return isinstance(exc, pymysql.err.OperationalError)
    return code in RETRIABLE_CODES or 2000 <= code < 3000


def classify(exc: BaseException, what: str) -> StorageError:
    """`exc` as the StorageError that says whether to retry; `what` names the failed call."""
    if isinstance(exc, StorageError):
        return exc
    kind = "timed out" if isinstance(exc, TimeoutError) else "failed"
    detail = str(exc) or type(exc).__name__
    code = error_code(exc)
    cls: type[StorageError] = TerminalStorageError
    if code in DATA_ERROR_CODES:
        cls = DataStorageError
    elif is_retriable(exc):
        cls = RetriableStorageError
    reason = f"({code}) {exc.args[1]}" if code is not None and len(exc.args) > 1 else detail
    return cls(f"{what} {kind}: {detail}", code, reason)


STATEMENT_TIMEOUT_CODES = frozenset({1969, 3024})
"""A statement ran out of its server-side time (MariaDB max_statement_time, MySQL 8)."""
SCHEMA_MISSING_CODES = frozenset({1054, 1146})
"""Unknown column or table: the schema is older than the code (run `lms migrate`)."""


def is_connection_lost(error: StorageError) -> bool:
    """The connection itself failed (a client error code), so a fresh one may work at once."""
    return error.code is not None and 2000 <= error.code < 3000


DATABASE_ERRORS = (pymysql.err.MySQLError, OSError, TimeoutError)
"""What a database call raises when the database, not our code, failed."""
