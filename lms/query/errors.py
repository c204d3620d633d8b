"""What can go wrong with a query: the caller's input (422, exit 2) or the database (503)."""

from __future__ import annotations


class QueryError(ValueError):
    """Invalid input to a query; `field` names the parameter (HTTP 422, CLI exit 2)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DatabaseUnavailable(Exception):
    """The database could not answer (down, timed out, schema missing); HTTP 503."""
