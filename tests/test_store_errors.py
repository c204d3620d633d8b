"""Which database errors are retried: one classification for the writer, reader and start-up.

Pure logic on the driver's own exception classes and MySQL error numbers; the integration
tests (test_shutdown, test_pipeline, test_faults) show each class doing its job end to end.
"""

from __future__ import annotations

import pymysql
import pytest

from lms.store.errors import (
    RetriableStorageError,
    StorageError,
    TerminalStorageError,
    classify,
    is_connection_lost,
    is_retriable,
)

RETRIABLE = [
    pymysql.err.OperationalError(2003, "Can't connect to MySQL server"),
    pymysql.err.OperationalError(2006, "MySQL server has gone away"),
    pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
    pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"),
    pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"),
    pymysql.err.OperationalError(1040, "Too many connections"),
    pymysql.err.OperationalError(1969, "Query execution was interrupted (max_statement_time)"),
    pymysql.err.InternalError(1317, "Query execution was interrupted"),
    pymysql.err.InterfaceError(0, ""),
    TimeoutError("no answer from MySQL within 10 s"),
    ConnectionResetError(104, "Connection reset by peer"),
]
TERMINAL = [
    pymysql.err.OperationalError(1045, "Access denied for user 'lms'@'localhost'"),
    pymysql.err.OperationalError(1044, "Access denied for user to database 'lms'"),
    pymysql.err.OperationalError(1142, "INSERT command denied to user"),
    pymysql.err.ProgrammingError(1146, "Table 'lms.service_logs' doesn't exist"),
    pymysql.err.OperationalError(1054, "Unknown column 'commit' in 'field list'"),
    pymysql.err.DataError(1406, "Data too long for column 'service_name'"),
    pymysql.err.IntegrityError(1048, "Column 'payload' cannot be null"),
    pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"),
]


@pytest.mark.parametrize("exc", RETRIABLE, ids=repr)
def test_connection_timeout_and_locking_errors_are_retriable(exc: BaseException) -> None:
    assert is_retriable(exc)
    error = classify(exc, "batch write")
    assert isinstance(error, RetriableStorageError)
    assert error.retriable


@pytest.mark.parametrize("exc", TERMINAL, ids=repr)
def test_schema_privilege_and_data_errors_are_terminal(exc: BaseException) -> None:
    assert not is_retriable(exc)
    error = classify(exc, "batch write")
    assert isinstance(error, TerminalStorageError)
    assert not error.retriable
    assert error.code == exc.args[0]


def test_the_message_names_the_call_and_the_cause() -> None:
    error = classify(pymysql.err.OperationalError(1045, "Access denied"), "migration")
    assert str(error) == "migration failed: (1045, 'Access denied')"
    assert str(classify(TimeoutError(), "batch write")) == "batch write timed out: TimeoutError"


def test_a_storage_error_is_kept_as_it_is() -> None:
    original = TerminalStorageError("no migrations found", None)
    assert classify(original, "migration") is original
    assert isinstance(original, StorageError)


def test_only_client_side_codes_count_as_a_lost_connection() -> None:
    assert is_connection_lost(classify(pymysql.err.OperationalError(2013, "Lost"), "query"))
    assert not is_connection_lost(classify(pymysql.err.OperationalError(1205, "Lock"), "query"))
    assert not is_connection_lost(classify(TimeoutError(), "query"))
