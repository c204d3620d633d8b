"""Collects the messages of concurrent requests into shared Publish requests.

Many producers POST one log per request; a Publish RPC per request would make the RPC, not
the log, the unit of cost. A batch stays open for `linger` seconds (or until the next turn of
the event loop, with 0) and closes early when it reaches Pub/Sub's limits, so concurrent
requests share one RPC while a lone request waits at most `linger`. Each message is one
position in one batch; a request gets its message ids back from the batches it landed in.

This is what the client library's threaded batcher does, done on the event loop: its
per-message futures and commit threads cost ~100 us of CPU per log, several times what one
Publish request of a thousand messages costs per log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

M = TypeVar("M")
"""A message as the sender wants it (an edge.Accepted log for the publisher)."""


@dataclass(eq=False)
class Batch(Generic[M]):
    """An open or sent batch; `result` is its message ids once Pub/Sub confirmed it."""

    result: asyncio.Future[Sequence[str]]
    messages: list[M] = field(default_factory=list)
    size: int = 0
    """Bytes of the batch's messages, as the Publish limit counts them (data + attributes)."""


@dataclass(slots=True)
class Slot(Generic[M]):
    """Where messages went: `count` of them, one after another in `batch` from `position`.
    A request's thousand messages are one slot or two (where a batch filled up), not a
    thousand objects. Not frozen (a frozen dataclass's `__init__` costs three times as
    much); never changed."""

    batch: Batch[M]
    position: int
    count: int = 1


class Batcher(Generic[M]):
    """Owns the open batch; sends each closed one as a task of its own."""

    def __init__(
        self,
        send: Callable[[list[M]], Awaitable[Sequence[str]]],
        linger: float,
        max_messages: int,
        max_bytes: int,
        on_done: Callable[[Batch[M]], None],
    ) -> None:
        """`on_done` hears of every batch once its send ended, confirmed or not."""
        self._send = send
        self._linger = linger
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._on_done = on_done
        self._open: Batch[M] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, message: M, size: int) -> Slot[M]:
        """Put `message` (`size` bytes) into the open batch, opening or closing batches as
        the limits say."""
        [slot] = self.add_all([message], [size])
        return slot

    def add_all(self, messages: Sequence[M], sizes: Sequence[int]) -> list[Slot[M]]:
        """`add` of each message in turn (`sizes` their bytes); where they went, in order."""
        slots: list[Slot[M]] = []
        batch = self._open
        start = len(batch.messages) if batch is not None else 0
        for message, size in zip(messages, sizes, strict=True):
            if batch is None or (
                len(batch.messages) >= self._max_messages or batch.size + size > self._max_bytes
            ):
                if batch is not None:
                    if len(batch.messages) > start:
                        slots.append(Slot(batch, start, len(batch.messages) - start))
                    self._close()
                batch, start = self._open_batch(), 0
            batch.messages.append(message)
            batch.size += size
        if batch is not None and len(batch.messages) > start:
            slots.append(Slot(batch, start, len(batch.messages) - start))
        return slots

    def _open_batch(self) -> Batch[M]:
        loop = asyncio.get_running_loop()
        batch: Batch[M] = Batch(loop.create_future())
        # A batch whose every request gave up is still awaited by nobody: read its error so
        # asyncio does not report it as never retrieved.
        batch.result.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._open = batch
        if self._linger > 0:
            loop.call_later(self._linger, self._close_if_open, batch)
        else:
            loop.call_soon(self._close_if_open, batch)
        return batch

    def _close_if_open(self, batch: Batch[M]) -> None:
        if self._open is batch:
            self._close()

    def _close(self) -> None:
        batch, self._open = self._open, None
        if batch is None:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, batch: Batch[M]) -> None:
        try:
            ids = await self._send(batch.messages)
        except asyncio.CancelledError:
            batch.result.cancel()
            raise
        except Exception as exc:
            batch.result.set_exception(exc)
        else:
            batch.result.set_result(ids)
        finally:
            self._on_done(batch)

    async def drain(self) -> None:
        """Send the open batch now and wait until every batch's send ended."""
        self._close()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    @staticmethod
    def message_ids(slots: Sequence[Slot[M]]) -> list[str]:
        """The ids of `slots`, once all their batches are done (raises a batch's error)."""
        ids: list[str] = []
        for slot in slots:
            ids.extend(slot.batch.result.result()[slot.position : slot.position + slot.count])
        return ids

    @staticmethod
    def batches(slots: Sequence[Slot[M]]) -> list[Batch[M]]:
        """The distinct batches `slots` landed in, in order."""
        return list({id(slot.batch): slot.batch for slot in slots}.values())
