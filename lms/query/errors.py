"""What can go wrong with a query: the caller's input (422, exit 2) or the database (503)."""

from __future__ import annotations


class QueryError(ValueError):
    """Invalid input to a query; `field` names the parameter (HTTP 422, CLI exit 2)."""

    kind = "value_error"
    """The `type` of the 422 body's entry."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TooManyBuckets(QueryError):
    """An aggregate's answer would hold more groups than its cap (API_MAX_BUCKETS), like
    Elasticsearch's `too_many_buckets_exception`: the query must be narrowed, not the answer
    silently cut."""

    kind = "too_many_buckets"

    def __init__(self, field: str, cap: int, narrow: str) -> None:
        super().__init__(
            field,
            f"the answer would hold more than {cap} buckets (API_MAX_BUCKETS); {narrow}",
        )
        self.cap = cap


class DatabaseUnavailable(Exception):
    """The database could not answer (down, timed out, schema missing); HTTP 503.

    `str()` is the short reason, safe to send to any client; `detail` is what the driver
    said (user names, hosts, SQL), for the operator: the API logs it, the CLI prints it.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail

    @property
    def explained(self) -> str:
        """The reason with the driver's detail, for an operator's terminal or log."""
        return f"{self.reason} ({self.detail})" if self.detail else self.reason
