"""Why a whole ingestion request is refused, each with the HTTP status shippers act on:
4xx is not retried (fix the request), 429 and 503 are retried after `Retry-After`."""

from __future__ import annotations


def why_not_json(exc: BaseException) -> str:
    """What a JSON parser's error says, for the client: a RecursionError (a body nested past
    the parser's depth) as the fault of the body, not as Python's recursion limit."""
    return "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)


class IngestError(Exception):
    """A request-level refusal; `status` is its HTTP status, `detail` says what is wrong."""

    status = 400
    close_connection = False
    """Whether the answer closes the connection (`Connection: close`)."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class BadRequest(IngestError):
    """The body cannot be decoded at all (not JSON, not the protocol's schema)."""

    status = 400


class RequestTimeout(IngestError):
    """The body did not arrive in time (INGEST_BODY_TIMEOUT): the connection is closed."""

    status = 408
    close_connection = True


class PayloadTooLarge(IngestError):
    """The body (compressed or decompressed) or its number of logs is over a limit."""

    status = 413


class UnsupportedMediaType(IngestError):
    """A Content-Type or Content-Encoding the endpoint does not read."""

    status = 415


class Overloaded(IngestError):
    """Too many bytes are being published at once: retry later (429)."""

    status = 429


class PublishUnavailable(IngestError):
    """Pub/Sub did not confirm in time, or cannot be reached: nothing is promised (503)."""

    status = 503
