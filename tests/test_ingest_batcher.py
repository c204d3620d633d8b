"""The batcher of HTTP ingestion's publisher: concurrent requests share Publish requests, within
Pub/Sub's limits, and every batch is accounted for once its send ended. Pure logic: `send` is
a coroutine of the test's that records what it was given."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from google.pubsub_v1 import PubsubMessage

from lms.ingest.http.batcher import Batch, Batcher, Slot


class Recorder:
    """A `send` that numbers the messages it gets, after `delay` s, or fails with `error`."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.sent: list[list[bytes]] = []
        self.done: list[Batch] = []
        self.delay = delay
        self.error = error

    async def send(self, messages: list[PubsubMessage]) -> Sequence[str]:
        first = sum(len(batch) for batch in self.sent)
        self.sent.append([m.data for m in messages])
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return [str(first + i) for i in range(len(messages))]

    def batcher(self, linger: float = 0.01, max_messages: int = 1000, max_bytes: int = 10**6):
        return Batcher(self.send, linger, max_messages, max_bytes, self.done.append)


def add(batcher: Batcher[PubsubMessage], *payloads: bytes) -> list[Slot[PubsubMessage]]:
    return [batcher.add(PubsubMessage(data=p), len(p)) for p in payloads]


async def wait(slots: list[Slot[PubsubMessage]]) -> list[str]:
    await asyncio.wait([b.result for b in Batcher.batches(slots)])
    return Batcher.message_ids(slots)


async def test_requests_within_the_linger_share_one_publish() -> None:
    recorder = Recorder()
    batcher = recorder.batcher(linger=1.0)  # long enough for a loaded machine's 10 ms sleep
    first = add(batcher, b"a", b"b")
    await asyncio.sleep(0.01)  # another request comes while the batch is open
    assert recorder.sent == []
    second = add(batcher, b"c")
    assert await wait(first) == ["0", "1"]
    assert await wait(second) == ["2"]
    assert recorder.sent == [[b"a", b"b", b"c"]]
    assert [b.size for b in recorder.done] == [3]


async def test_with_no_linger_one_turn_of_the_loop_shares_a_publish() -> None:
    recorder = Recorder()
    batcher = recorder.batcher(linger=0)
    together = add(batcher, b"a") + add(batcher, b"b")
    await wait(together)
    later = add(batcher, b"c")
    await wait(later)
    assert recorder.sent == [[b"a", b"b"], [b"c"]]


async def test_a_full_batch_is_sent_at_once_and_the_rest_goes_on() -> None:
    recorder = Recorder()
    batcher = recorder.batcher(linger=60, max_messages=3)  # never by time in this test
    slots = add(batcher, *[bytes([65 + i]) for i in range(7)])
    assert len(Batcher.batches(slots)) == 3
    await batcher.drain()
    assert [len(batch) for batch in recorder.sent] == [3, 3, 1]
    assert await wait(slots) == [str(i) for i in range(7)]


async def test_a_batch_never_exceeds_the_byte_limit() -> None:
    recorder = Recorder()
    batcher = recorder.batcher(linger=60, max_bytes=10)
    add(batcher, b"x" * 6, b"y" * 4, b"z" * 1, b"w" * 10)
    await batcher.drain()
    assert recorder.sent == [[b"x" * 6, b"y" * 4], [b"z"], [b"w" * 10]]


async def test_a_failed_send_fails_its_requests_and_still_releases_its_bytes() -> None:
    recorder = Recorder(error=RuntimeError("unavailable"))
    batcher = recorder.batcher()
    slots = add(batcher, b"abc")
    with pytest.raises(RuntimeError, match="unavailable"):
        await wait(slots)
    assert [b.size for b in recorder.done] == [3]


async def test_a_batch_nobody_waits_for_any_more_still_ends_and_is_released() -> None:
    recorder = Recorder(delay=0.05, error=RuntimeError("late"))
    batcher = recorder.batcher(linger=0)
    add(batcher, b"abandoned")  # the request gave up: nobody reads the result
    await batcher.drain()
    assert [b.size for b in recorder.done] == [9]


async def test_drain_sends_the_open_batch_and_waits_for_every_send() -> None:
    recorder = Recorder(delay=0.02)
    batcher = recorder.batcher(linger=60)
    slots = add(batcher, b"a", b"b")
    await batcher.drain()
    assert recorder.sent == [[b"a", b"b"]]
    assert len(recorder.done) == 1
    assert Batcher.message_ids(slots) == ["0", "1"]


async def test_add_all_places_a_requests_messages_as_add_would_in_a_few_slots() -> None:
    recorder = Recorder()
    batcher = recorder.batcher(linger=60, max_messages=4, max_bytes=10)
    first = add(batcher, b"a")  # another request's message, in the open batch
    payloads = [b"b", b"c", b"d", b"e", b"f", b"gggggggg", b"h"]
    slots = batcher.add_all([PubsubMessage(data=p) for p in payloads], [len(p) for p in payloads])
    # b c d after a (4 messages: full), e f gggggggg (10 bytes: h would pass them), h.
    assert [(s.position, s.count) for s in slots] == [(1, 3), (0, 3), (0, 1)]
    assert len(Batcher.batches(slots)) == 3
    assert Batcher.batches(first) == Batcher.batches(slots)[:1]
    later = add(batcher, b"i")  # the open batch takes the next request's message too
    await batcher.drain()
    assert recorder.sent == [[b"a", b"b", b"c", b"d"], [b"e", b"f", b"gggggggg"], [b"h", b"i"]]
    assert await wait(slots) == [str(i) for i in range(1, 8)]
    assert await wait(first) == ["0"] and await wait(later) == ["8"]
    assert batcher.add_all([], []) == []
