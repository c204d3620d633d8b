"""Which database errors are retried: one classification for the writer, reader and start-up.

Pure logic on the driver's own exception classes and MySQL error numbers; the integration
tests (test_shutdown, test_pipeline, test_faults) show each class doing its job end to end.
"""

from __future__ import annotations

import pymysql
import pytest

from lms.store.errors import (
    DataStorageError,
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
    pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"),
    pymysql.err.IntegrityError(1062, "Duplicate entry 'x' for key 'uq_service_logs_key'"),
]
DATA = [
    pymysql.err.DataError(1406, "Data too long for column 'service_name' at row 3"),
    pymysql.err.DataError(1265, "Data truncated for column 'severity' at row 1"),
    pymysql.err.IntegrityError(1048, "Column 'payload' cannot be null"),
    pymysql.err.DataError(1366, "Incorrect string value: '\\xF0\\x9F' for column 'payload'"),
    pymysql.err.OperationalError(4025, "CONSTRAINT `service_logs.metadata` failed"),
    pymysql.err.OperationalError(3819, "Check constraint 'metadata' is violated."),
    pymysql.err.DataError(1292, "Incorrect datetime value: '0000-00-00' for column"),
    pymysql.err.OperationalError(1153, "Got a packet bigger than 'max_allowed_packet' bytes"),
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


@pytest.mark.parametrize("exc", DATA, ids=repr)
def test_data_errors_are_terminal_and_marked_for_splitting(exc: BaseException) -> None:
    """A retry cannot fix them (the same rows fail the same way), but storing the batch
    without the rows at fault can: whatever class the driver raised them as."""
    error = classify(exc, "batch write")
    assert isinstance(error, DataStorageError)
    assert (error.retriable, error.data_error, error.code) == (False, True, exc.args[0])
    assert error.reason == f"({exc.args[0]}) {exc.args[1]}"  # the database's own words


@pytest.mark.parametrize("exc", RETRIABLE + TERMINAL, ids=repr)
def test_other_errors_are_not_data_errors(exc: BaseException) -> None:
    assert not classify(exc, "batch write").data_error
