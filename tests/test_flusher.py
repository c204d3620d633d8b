"""The flusher's ordering: a batch is acked only after its commit, its ack may overlap the next
batch's write, the batch after that is taken in meanwhile but written only after the previous
commit, and the flusher does not return before the last ack is done.

In-memory stand-ins for the write and the ack record the order of events; the real database and
emulator paths are covered by tests/test_pipeline.py and tests/test_faults.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lms.ingest.pipeline.flusher import Flusher
from lms.ingest.received import Received
from lms.store.errors import (
    DataStorageError,
    RetriableStorageError,
    StorageError,
    TerminalStorageError,
)
from lms.store.writer import BatchResult


class Gates:
    """Each call records that it started, then waits until the test opens its gate."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events
        self.release: list[asyncio.Event] = []

    async def passage(self, detail: str, done: str) -> None:
        number = len(self.release)
        gate = asyncio.Event()
        self.release.append(gate)
        self.events.append(f"{self.name} {number} started{detail}")
        await gate.wait()
        self.events.append(f"{self.name} {number} {done}")


class RecordingStorage(Gates):
    async def write_batch(self, logs: Sequence[Any], rejections: Sequence[Any]) -> BatchResult:
        await self.passage("", "committed")
        return BatchResult(new_by_key={("svc", "info"): len(logs)})


class RecordingAcker(Gates):
    async def ack(self, ack_ids: list[str]) -> None:
        await self.passage(f" {ack_ids}", "done")


def received(number: int) -> Received:
    data = json.dumps(
        {
            "service_name": "svc",
            "payload": f"log {number}",
            "severity": "info",
            "timestamp": "2026-11-23T10:00:00Z",
        }
    ).encode()
    return Received(f"ack-{number}", str(number), data, 0.0, datetime(2026, 11, 23))


async def until(condition: Any, turns: int = 1000) -> None:
    """Let the other tasks run until `condition` holds (no wall-clock time involved)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


@dataclass
class Rig:
    """A flusher with batches of 2, running over in-memory stand-ins that record events."""

    events: list[str]
    storage: RecordingStorage
    acker: RecordingAcker
    queue: asyncio.Queue[list[Received] | None]
    flusher: Flusher
    running: asyncio.Task[None]

    @classmethod
    def start(cls) -> Rig:
        events: list[str] = []
        storage, acker = RecordingStorage("write", events), RecordingAcker("ack", events)
        queue: asyncio.Queue[list[Received] | None] = asyncio.Queue()
        flusher = Flusher(queue, storage, acker, batchsize=2, flushinterval=60)
        return cls(events, storage, acker, queue, flusher, asyncio.create_task(flusher.run()))


async def settle() -> None:
    """Give every task a few turns, so whatever could happen next has happened."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_ack_follows_commit_and_overlaps_the_next_write() -> None:
    rig = Rig.start()
    events, storage, acker, queue = rig.events, rig.storage, rig.acker, rig.queue
    await queue.put([received(1), received(2), received(3), received(4)])
    await queue.put(None)

    await until(lambda: len(storage.release) == 1)
    assert not acker.release  # nothing acked while the first transaction is open
    storage.release[0].set()
    await until(lambda: len(acker.release) == 1 and len(storage.release) == 2)
    assert events[:2] == ["write 0 started", "write 0 committed"]
    # The ack of batch 0 and the write of batch 1 both follow its COMMIT, in either order.
    assert sorted(events[2:]) == ["ack 0 started ['ack-1', 'ack-2']", "write 1 started"]
    storage.release[1].set()
    # The second batch's ack waits for the first one's: one batch is acked at a time.
    await until(lambda: "write 1 committed" in events)
    await settle()
    assert len(acker.release) == 1
    assert rig.flusher.batches == 0
    acker.release[0].set()
    await until(lambda: len(acker.release) == 2)
    assert events[-1] == "ack 1 started ['ack-3', 'ack-4']"
    assert not rig.running.done()  # the flusher returns only after its last ack
    acker.release[1].set()
    await asyncio.wait_for(rig.running, 5)
    assert rig.flusher.batches == 2
    assert events[-1] == "ack 1 done"


async def test_next_batch_is_taken_in_while_one_is_written_but_written_after_it() -> None:
    rig = Rig.start()
    events, storage, acker, queue = rig.events, rig.storage, rig.acker, rig.queue
    for number in (1, 3, 5):
        await queue.put([received(number), received(number + 1)])
    await queue.put(None)

    await until(lambda: len(storage.release) == 1 and queue.qsize() == 2)
    await settle()
    # Batch 1 was received and parsed during write 0, batch 2 waits in the queue, and only
    # one transaction is open at a time.
    assert queue.qsize() == 2
    assert events == ["write 0 started"]
    storage.release[0].set()
    await until(lambda: len(storage.release) == 2 and queue.qsize() == 1)
    assert "write 0 committed" in events
    storage.release[1].set()
    await until(lambda: len(storage.release) == 3)
    assert events.index("write 1 committed") < events.index("write 2 started")
    storage.release[2].set()
    for gate in range(3):
        await until(lambda: len(acker.release) > gate)  # noqa: B023 (awaited at once)
        acker.release[gate].set()
    await asyncio.wait_for(rig.running, 5)
    assert rig.flusher.batches == 3
    assert [e for e in events if e.endswith("done")] == ["ack 0 done", "ack 1 done", "ack 2 done"]


async def test_cancelling_the_flusher_abandons_the_write_unacked() -> None:
    rig = Rig.start()
    events, storage, acker, queue = rig.events, rig.storage, rig.acker, rig.queue
    await queue.put([received(1), received(2)])
    await until(lambda: len(storage.release) == 1)
    rig.running.cancel()
    await asyncio.gather(rig.running, return_exceptions=True)
    assert rig.running.cancelled()
    assert events == ["write 0 started"]  # the write was cancelled, not waited for
    assert not acker.release


class FailingWriter:
    """Fails the first `failures` writes with `error`, then commits."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    async def write_batch(self, logs: Sequence[Any], rejections: Sequence[Any]) -> BatchResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return BatchResult(new_by_key={("svc", "info"): len(logs)})


class ListAcker:
    def __init__(self) -> None:
        self.acked: list[str] = []

    async def ack(self, ack_ids: list[str]) -> None:
        self.acked.extend(ack_ids)


async def run_one_batch(writer: FailingWriter) -> tuple[ListAcker, BaseException | None]:
    acker = ListAcker()
    queue: asyncio.Queue[list[Received] | None] = asyncio.Queue()
    flusher = Flusher(queue, writer, acker, batchsize=2, flushinterval=60, max_backoff=0.01)
    await queue.put([received(1), received(2)])
    await queue.put(None)
    try:
        await asyncio.wait_for(flusher.run(), 10)
    except StorageError as exc:
        return acker, exc
    return acker, None


async def test_a_retriable_error_is_retried_until_the_batch_commits() -> None:
    writer = FailingWriter(RetriableStorageError("batch write failed: lost connection"), 3)
    acker, error = await run_one_batch(writer)
    assert error is None
    assert writer.calls == 4
    assert acker.acked == ["ack-1", "ack-2"]


async def test_a_terminal_error_ends_the_flusher_unacked_without_retrying() -> None:
    terminal = TerminalStorageError("batch write failed: (1146, table doesn't exist)", 1146)
    writer = FailingWriter(terminal, 1)
    acker, error = await run_one_batch(writer)
    assert error is terminal
    assert writer.calls == 1
    assert acker.acked == []


class RefusingWriter:
    """Refuses any transaction holding a log whose payload says BAD, as a database refuses a
    value it cannot store; keeps what it committed."""

    def __init__(self) -> None:
        self.logs: list[str] = []
        self.rejections: list[tuple[str, str]] = []
        self.calls = 0

    async def write_batch(self, logs: Sequence[Any], rejections: Sequence[Any]) -> BatchResult:
        self.calls += 1
        if any("BAD" in item.record.payload for item in logs):
            raise DataStorageError(
                "batch write failed: (1406, ...)", 1406, "(1406) Data too long for column"
            )
        self.logs.extend(item.message_id for item in logs)
        self.rejections.extend((r.message_id, r.rejection.detail) for r in rejections)
        result = BatchResult(new_by_key={("svc", "info"): len(logs)} if logs else {})
        if rejections:
            result.rejected_by_reason = {"invalid_field": len(rejections)}
        return result


def log_saying(number: int, payload: str) -> Received:
    data = json.dumps(
        {
            "service_name": "svc",
            "payload": payload,
            "severity": "info",
            "timestamp": "2026-11-23T10:00:00Z",
        }
    ).encode()
    return Received(f"ack-{number}", str(number), data, 0.0, datetime(2026, 11, 23))


async def test_a_batch_the_database_refuses_is_split_and_the_refused_kept_as_rejected() -> None:
    writer, acker = RefusingWriter(), ListAcker()
    queue: asyncio.Queue[list[Received] | None] = asyncio.Queue()
    flusher = Flusher(queue, writer, acker, batchsize=64, flushinterval=60, max_backoff=0.01)
    bad = {3, 41}
    await queue.put([log_saying(n, "BAD" if n in bad else f"log {n}") for n in range(64)])
    await queue.put(None)
    await asyncio.wait_for(flusher.run(), 10)
    assert sorted(writer.logs, key=int) == [str(n) for n in range(64) if n not in bad]
    assert sorted(mid for mid, _ in writer.rejections) == ["3", "41"]
    assert all(
        detail == "refused by the database: (1406) Data too long for column"
        for _, detail in writer.rejections
    )
    assert sorted(acker.acked) == sorted(f"ack-{n}" for n in range(64))  # all settled
    assert writer.calls <= 1 + 2 * 2 * 6  # bisected (two paths of depth 6), not one by one
    assert flusher.batches == 1


async def test_a_terminal_error_that_is_not_a_data_error_is_not_split() -> None:
    terminal = TerminalStorageError("batch write failed: (1142, INSERT denied)", 1142)
    writer = FailingWriter(terminal, 100)
    acker, error = await run_one_batch(writer)
    assert error is terminal
    assert writer.calls == 1  # no split: every part would fail the same way
    assert acker.acked == []
