"""The one task that owns the buffer: parse, batch, write in one transaction, then ack.

Messages are acked only after COMMIT succeeds. A failed transaction is rolled back and retried
with capped exponential backoff, keeping the messages unacked (their leases kept alive), so a
database outage delays logs but never loses them; a batch the database refuses is split
(lms.ingest.pipeline.storing), so one bad message cannot stall the pipeline.

Three batches are in the pipeline at once, each at its own stage: one is acked, the next one
is written, and the one after it is received and parsed. So the database is kept busy with the
next transaction while this process parses (and the ack round trips overlap the write): in a
backlog the slowest stage, normally the database, paces the whole. There is at most one
transaction and one ack in flight, transactions commit in batch order, a batch's ack starts only
after its COMMIT, and the flusher returns only once its last write and ack are done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from lms.domain.patterns import pattern_of
from lms.domain.record import DEFAULT_RULES, LogRecord, Reason, Rejection, Rules, parse_message
from lms.ingest.pipeline.batcher import Batcher, Trigger
from lms.ingest.pipeline.storing import BatchStore, Parsed, Writer
from lms.ingest.received import Received
from lms.ops import metrics
from lms.store.writer import BatchResult

log = structlog.get_logger(__name__)


class Acker(Protocol):
    """Settles committed messages with their source (a Pub/Sub Dispatcher)."""

    async def ack(self, ack_ids: list[str]) -> None: ...


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
        writer: Writer,
        acker: Acker,
        batchsize: int,
        flushinterval: float,
        clock: Callable[[], float] = time.monotonic,
        max_backoff: float = 10.0,
        batch_max_bytes: int | None = None,
        rules: Rules = DEFAULT_RULES,
    ) -> None:
        self._queue = queue
        self._store = BatchStore(writer, max_backoff)
        self._acker = acker
        self._batcher: Batcher[Parsed] = Batcher(
            batchsize, flushinterval, clock, batch_max_bytes, _body_bytes
        )
        self._rules = rules
        self._writing: asyncio.Task[None] | None = None
        self._acking: asyncio.Task[None] | None = None
        self.batches = 0

    async def run(self) -> None:
        """Consume chunks until the `None` sentinel, then flush, commit and ack what is left.

        If the flusher fails or is cancelled, the batches under way are abandoned unacked:
        Pub/Sub redelivers them, and the storage ignores whatever had already committed.
        """
        try:
            await self._consume()
            await _finished(self._writing)
            await _finished(self._acking)
        finally:
            under_way = [t for t in (self._writing, self._acking) if t and not t.done()]
            for task in under_way:
                task.cancel()
            await asyncio.gather(*under_way, return_exceptions=True)

    async def _consume(self) -> None:
        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                while len(self._batcher):
                    await self._flush(self._batcher.due() or Trigger.SHUTDOWN)
                return
            if chunk:
                self._batcher.add(self._parse(item) for item in chunk)
                metrics.BUFFERED.set(len(self._batcher))
            while trigger := self._batcher.due():
                await self._flush(trigger)

    def _parse(self, item: Received) -> Parsed:
        """The message parsed, and a log's pattern masked here rather than in the write: this
        stage runs while the previous batch is written, so the database does not wait for the
        masking between its BEGIN and its INSERT."""
        if item.key_problem is not None:
            return Parsed(item, Rejection(Reason.INVALID_FIELD, item.key_problem))
        outcome = parse_message(item.data, self._rules)
        if isinstance(outcome, LogRecord):
            return Parsed(item, outcome, pattern_of(outcome.payload))
        return Parsed(item, outcome)

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
        """Hand the next batch to the writer once the previous transaction is over."""
        await _finished(self._writing)
        batch = self._batcher.take()
        metrics.BUFFERED.set(len(self._batcher))
        self._writing = asyncio.create_task(self._commit(trigger, batch), name="write")

    async def _commit(self, trigger: Trigger, batch: list[Parsed]) -> None:
        """Store one batch (retrying, and splitting what the database refuses, until it is
        all committed), then hand it to its ack."""
        started = time.monotonic()
        result = await self._store.store(batch)
        committed = Committed(trigger, batch, result, time.monotonic() - started, time.time())
        self._acking = asyncio.create_task(self._ack(committed, self._acking), name="ack")

    async def _ack(self, committed: Committed, previous: asyncio.Task[None] | None) -> None:
        """Ack after the previous batch's ack: batches are acked and recorded in order."""
        await _finished(previous)
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
        at = committed.committed_at
        lags = [at - item.received.publish_time for item in committed.batch]
        metrics.observe_many(metrics.PUBLISH_TO_COMMIT, lags)
        metrics.COMMIT_LAG.set(max(lags, default=0.0))


def _body_bytes(item: Parsed) -> int:
    """What BATCH_MAX_BYTES counts: the message's body, which bounds what storing it writes
    (a log's fields are no larger, a rejected body is kept as a prefix). Counting what is
    held, not what is written, keeps a buffer that fills MAX_OUTSTANDING_BYTES due at once."""
    return len(item.received.data)


async def _finished(task: asyncio.Task[None] | None) -> None:
    """Wait for a stage (a write or an ack), if one was started; re-raises its error."""
    if task is not None:
        await task
