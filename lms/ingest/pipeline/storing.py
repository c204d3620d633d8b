"""Storing one batch: retry what a retry can fix, split what the database refuses.

A batch is one transaction (lms.store.writer). A retriable error (lost connection, timeout,
deadlock) rolls it back, and it is retried with capped exponential backoff, its messages kept
unacked. A data error (a value the database refuses) would fail the same way forever and stall
the pipeline for everyone, so such a batch is split in halves, each stored (and split again)
on its own, until the refused messages are alone: each of them is then kept in
rejected_messages with the database's reason, and the rest of the batch is stored. Splitting
keeps the exactness of the whole: every part is idempotent and counts only the rows it newly
inserted, so a crash between parts only leads to a redelivery whose stored part is ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from lms.domain.record import LogRecord, Reason, Rejection
from lms.ingest.received import Received
from lms.ops import metrics
from lms.store.errors import StorageError
from lms.store.writer import (
    MAX_KEY,
    MAX_MESSAGE_ID,
    BatchResult,
    StoredLog,
    StoredRejection,
)

log = structlog.get_logger(__name__)

REFUSED = "refused by the database: "
"""How the detail of a message the database refused begins (its reason is INVALID_FIELD)."""


class Writer(Protocol):
    """Stores a batch in one transaction (lms.store.writer.BatchWriter)."""

    async def write_batch(
        self, logs: Sequence[StoredLog], rejections: Sequence[StoredRejection]
    ) -> BatchResult: ...


@dataclass(frozen=True, slots=True)
class Parsed:
    """A message as the flusher holds it; `pattern` is a log's (id, template), masked when
    it was parsed (None: the writer masks it)."""

    received: Received
    outcome: LogRecord | Rejection
    pattern: tuple[int, str] | None = None


class BatchStore:
    def __init__(self, writer: Writer, max_backoff: float = 10.0) -> None:
        self._writer = writer
        self._max_backoff = max_backoff

    async def store(self, batch: Sequence[Parsed]) -> BatchResult:
        """Store a batch, split as needed; raises only a terminal error that is not a data
        error (the schema, privileges), with nothing of the failing part stored."""
        return await self._store(_unique(batch))

    async def _store(self, items: list[Parsed]) -> BatchResult:
        try:
            return await self._write(items)
        except StorageError as exc:
            if not exc.data_error:
                raise
            error = exc
        if len(items) == 1:
            return await self._refused(items[0], error)
        log.warning(
            "batch refused by the database; splitting it", size=len(items), error=error.reason
        )
        middle = len(items) // 2
        result = await self._store(items[:middle])
        result.add(await self._store(items[middle:]))
        return result

    async def _refused(self, item: Parsed, error: StorageError) -> BatchResult:
        """Keep one message the database refused as a rejected message, with its reason.

        A rejection the database refuses too (a producer's key longer than the column, say)
        is kept under a key and message id cut to fit: the key becomes its SHA-256, so a
        redelivery still finds it. If even that is refused, the error is raised.
        """
        received = item.received
        detail = REFUSED + error.reason
        log.warning(
            "message refused by the database; kept as rejected",
            message_id=received.message_id,
            error=error.reason,
        )
        rejection = StoredRejection(
            received.message_id,
            Rejection(Reason.INVALID_FIELD, detail),
            received.data,
            received.received_at,
            received.idempotency_key,
        )
        if isinstance(item.outcome, LogRecord):
            try:
                return await self._write_rows([], [rejection])
            except StorageError as exc:
                if not exc.data_error:
                    raise
            outcome = rejection.rejection
        else:
            outcome = Rejection(item.outcome.reason, f"{item.outcome.detail}; {detail}")
        key = received.idempotency_key
        if len(key) > MAX_KEY:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        fitted = StoredRejection(
            received.message_id[:MAX_MESSAGE_ID], outcome, received.data, received.received_at, key
        )
        return await self._write_rows([], [fitted])

    async def _write(self, items: Sequence[Parsed]) -> BatchResult:
        logs: list[StoredLog] = []
        rejections: list[StoredRejection] = []
        for item in items:
            received, outcome = item.received, item.outcome
            key = received.idempotency_key
            if isinstance(outcome, LogRecord):
                logs.append(StoredLog(received.message_id, outcome, key, item.pattern))
            else:
                rejections.append(
                    StoredRejection(
                        received.message_id, outcome, received.data, received.received_at, key
                    )
                )
        return await self._write_rows(logs, rejections)

    async def _write_rows(
        self, logs: list[StoredLog], rejections: list[StoredRejection]
    ) -> BatchResult:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_retriable),
            wait=wait_exponential_jitter(multiplier=0.5, max=self._max_backoff),
            before_sleep=_log_db_error,
            reraise=True,
        )
        return await retrying(self._writer.write_batch, logs, rejections)


def _unique(batch: Sequence[Parsed]) -> list[Parsed]:
    """One item per idempotency key (the first), logs before rejections: a message redelivered
    while its first delivery is still in the batch is written once."""
    logs: dict[str, Parsed] = {}
    rejections: dict[str, Parsed] = {}
    for item in batch:
        into = logs if isinstance(item.outcome, LogRecord) else rejections
        into.setdefault(item.received.idempotency_key, item)
    return [*logs.values(), *rejections.values()]


def _log_db_error(state: RetryCallState) -> None:
    metrics.DB_ERRORS.inc()
    error = state.outcome.exception() if state.outcome else None
    log.error(
        "database write failed; rolled back, messages kept unacked, retrying",
        attempt=state.attempt_number,
        retry_in=round(state.upcoming_sleep, 2),
        error=str(error),
    )


def _retriable(exc: BaseException) -> bool:
    """Retry what a retry can fix; a terminal error (schema, privileges) ends the flusher with
    the batch unacked, instead of retrying it forever; a data error is split by the caller."""
    return isinstance(exc, StorageError) and exc.retriable
