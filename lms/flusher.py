"""The one task that owns the buffer: parse, batch, write in one transaction, then ack.

Messages are acked only after COMMIT succeeds. A failed transaction is rolled back and retried
with capped exponential backoff, keeping the messages unacked (their leases kept alive), so a
database outage delays logs but never loses them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from lms import metrics
from lms.acker import Acker
from lms.batcher import Batcher, Trigger
from lms.model import LogRecord, Rejection, parse_message
from lms.storage import BatchResult, Storage, StorageError, StoredLog, StoredRejection
from lms.subscriber import Received

log = structlog.get_logger("lms.flusher")


@dataclass(frozen=True, slots=True)
class Parsed:
    received: Received
    outcome: LogRecord | Rejection


class Flusher:
    def __init__(
        self,
        queue: asyncio.Queue[list[Received] | None],
        storage: Storage,
        acker: Acker,
        batchsize: int,
        flushinterval: float,
        clock: Callable[[], float] = time.monotonic,
        max_backoff: float = 10.0,
    ) -> None:
        self._queue = queue
        self._storage = storage
        self._acker = acker
        self._batcher: Batcher[Parsed] = Batcher(batchsize, flushinterval, clock)
        self._max_backoff = max_backoff
        self.batches = 0

    async def run(self) -> None:
        """Consume chunks until the `None` sentinel, then flush what is left and return."""
        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                while len(self._batcher):
                    await self._flush(self._batcher.due() or Trigger.SHUTDOWN)
                return
            if chunk:
                self._batcher.add(Parsed(item, parse_message(item.data)) for item in chunk)
                metrics.BUFFERED.set(len(self._batcher))
            while trigger := self._batcher.due():
                await self._flush(trigger)

    async def _next_chunk(self) -> list[Received] | None:
        """The next chunk; [] when the interval elapsed first, None for the stop sentinel."""
        left = self._batcher.time_left()
        try:
            if left is None:
                return await self._queue.get()
            if left <= 0:
                return self._queue.get_nowait()
            async with asyncio.timeout(left):
                return await self._queue.get()
        except (TimeoutError, asyncio.QueueEmpty):
            return []

    async def _flush(self, trigger: Trigger) -> None:
        batch = self._batcher.take()
        metrics.BUFFERED.set(len(self._batcher))
        started = time.monotonic()
        logs: dict[str, StoredLog] = {}
        rejections: dict[str, StoredRejection] = {}
        for item in batch:
            received, outcome = item.received, item.outcome
            if isinstance(outcome, LogRecord):
                logs.setdefault(received.message_id, StoredLog(received.message_id, outcome))
            else:
                rejections.setdefault(
                    received.message_id,
                    StoredRejection(
                        received.message_id, outcome, received.data, received.received_at
                    ),
                )
        result = await self._write(list(logs.values()), list(rejections.values()))
        commit_seconds = time.monotonic() - started
        committed_at = time.time()
        await self._acker.ack([item.received.ack_id for item in batch])
        self.batches += 1
        self._record(trigger, batch, result, commit_seconds, committed_at)
        log.info(
            "batch committed",
            size=len(batch),
            trigger=trigger.value,
            new=result.new,
            duplicates=len(batch) - result.new - result.rejected_new,
            rejected=result.rejected_new,
            commit_seconds=round(commit_seconds, 4),
        )

    async def _write(self, logs: list[StoredLog], rejections: list[StoredRejection]) -> BatchResult:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(StorageError),
            wait=wait_exponential_jitter(multiplier=0.5, max=self._max_backoff),
            before_sleep=self._log_db_error,
            reraise=True,
        )
        return await retrying(self._storage.write_batch, logs, rejections)

    @staticmethod
    def _log_db_error(state: RetryCallState) -> None:
        metrics.DB_ERRORS.inc()
        error = state.outcome.exception() if state.outcome else None
        log.error(
            "database write failed; rolled back, messages kept unacked, retrying",
            attempt=state.attempt_number,
            retry_in=round(state.upcoming_sleep, 2),
            error=str(error),
        )

    @staticmethod
    def _record(
        trigger: Trigger,
        batch: list[Parsed],
        result: BatchResult,
        commit_seconds: float,
        committed_at: float,
    ) -> None:
        metrics.BATCHES_FLUSHED.labels(trigger.value).inc()
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.FLUSH_DURATION.observe(commit_seconds)
        metrics.LAST_COMMIT.set(committed_at)
        metrics.MESSAGES_DUPLICATE.inc(len(batch) - result.new - result.rejected_new)
        for (_service, severity), count in result.new_by_key.items():
            metrics.LOGS_STORED.labels(severity).inc(count)
        for reason, count in result.rejected_by_reason.items():
            metrics.MESSAGES_REJECTED.labels(reason).inc(count)
        for item in batch:
            metrics.PUBLISH_TO_COMMIT.observe(committed_at - item.received.publish_time)
