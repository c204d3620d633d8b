"""The one task that owns the buffer: parse, batch, write in one transaction, then ack.

Messages are acked only after COMMIT succeeds. A failed transaction is rolled back and retried
with capped exponential backoff, keeping the messages unacked (their leases kept alive), so a
database outage delays logs but never loses them.

The ack of a committed batch runs while the next batch is written: the database, not the ack
round trips, is then what paces a backlog. At most one batch is being acked at a time, and the
flusher returns only once its last ack is done.
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


@dataclass(frozen=True, slots=True)
class Committed:
    """A batch whose transaction committed, on its way to being acked and recorded."""

    trigger: Trigger
    batch: list[Parsed]
    result: BatchResult
    commit_seconds: float
    committed_at: float

    @property
    def duplicates(self) -> int:
        return len(self.batch) - self.result.new - self.result.rejected_new


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
        self._acking: asyncio.Task[None] | None = None
        self.batches = 0

    async def run(self) -> None:
        """Consume chunks until the `None` sentinel, then flush and ack what is left."""
        try:
            await self._consume()
        finally:
            await self._acked()

    async def _consume(self) -> None:
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
        committed = Committed(trigger, batch, result, time.monotonic() - started, time.time())
        await self._acked()
        self._acking = asyncio.create_task(self._ack(committed), name="ack")

    async def _acked(self) -> None:
        """Wait for the ack of the previous batch, if one is still under way."""
        if self._acking is not None:
            acking, self._acking = self._acking, None
            await acking

    async def _ack(self, committed: Committed) -> None:
        await self._acker.ack([item.received.ack_id for item in committed.batch])
        self.batches += 1
        self._record(committed)
        log.info(
            "batch committed",
            size=len(committed.batch),
            trigger=committed.trigger.value,
            new=committed.result.new,
            duplicates=committed.duplicates,
            rejected=committed.result.rejected_new,
            commit_seconds=round(committed.commit_seconds, 4),
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
    def _record(committed: Committed) -> None:
        result = committed.result
        metrics.BATCHES_FLUSHED.labels(committed.trigger.value).inc()
        metrics.BATCH_SIZE.observe(len(committed.batch))
        metrics.FLUSH_DURATION.observe(committed.commit_seconds)
        metrics.LAST_COMMIT.set(committed.committed_at)
        metrics.MESSAGES_DUPLICATE.inc(committed.duplicates)
        for (_service, severity), count in result.new_by_key.items():
            metrics.LOGS_STORED.labels(severity).inc(count)
        for reason, count in result.rejected_by_reason.items():
            metrics.MESSAGES_REJECTED.labels(reason).inc(count)
        for item in committed.batch:
            metrics.PUBLISH_TO_COMMIT.observe(committed.committed_at - item.received.publish_time)
