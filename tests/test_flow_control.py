"""FlowControl: reservations never exceed the bound, block when full, and wake on release."""

from __future__ import annotations

import asyncio
import random

import pytest

from lms.ingest.sources.pubsub.flow_control import FlowControl


async def settle(rounds: int = 20) -> None:
    """Let every ready task run (no wall-clock sleep: each round yields to the loop once)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_reserve_grants_at_most_the_free_capacity() -> None:
    flow = FlowControl(10)
    assert await flow.reserve(4) == 4
    assert flow.outstanding == 4
    assert await flow.reserve(100) == 6
    assert flow.outstanding == 10


async def test_reserve_blocks_while_full_until_release() -> None:
    flow = FlowControl(5)
    assert await flow.reserve(5) == 5
    waiter = asyncio.create_task(flow.reserve(3))
    await settle()
    assert not waiter.done()
    assert flow.outstanding == 5
    await flow.release(2)
    assert await asyncio.wait_for(waiter, 5) == 2  # only what was freed
    assert flow.outstanding == 5


async def test_release_wakes_every_waiter_that_fits() -> None:
    flow = FlowControl(4)
    await flow.reserve(4)
    waiters = [asyncio.create_task(flow.reserve(2)) for _ in range(3)]
    await settle()
    assert not any(w.done() for w in waiters)
    await flow.release(4)
    await settle()
    done = [w for w in waiters if w.done()]
    assert sorted(w.result() for w in done) == [2, 2]
    assert flow.outstanding == 4
    blocked = next(w for w in waiters if not w.done())
    await flow.release(1)
    assert await asyncio.wait_for(blocked, 5) == 1
    assert flow.outstanding == 4


async def test_outstanding_never_exceeds_the_bound_under_concurrency() -> None:
    flow = FlowControl(50)
    rng = random.Random(1234)
    peak = 0

    async def worker() -> None:
        nonlocal peak
        for _ in range(50):
            granted = await flow.reserve(rng.randint(1, 40))
            assert 1 <= granted <= 40
            peak = max(peak, flow.outstanding)
            assert flow.outstanding <= flow.max_outstanding
            await asyncio.sleep(0)
            await flow.release(granted)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(20))), 30)
    assert peak == 50  # the bound was reached, so the check above really constrained it
    assert flow.peak == peak  # the high-water mark saw what the samples saw
    assert flow.outstanding == 0


async def test_peak_is_the_high_water_mark_of_reserve_and_admit() -> None:
    """What the pipeline test reads instead of sampling a gauge: the most ever outstanding,
    reservations and a stream's unasked messages alike, never lowered by a release."""
    flow = FlowControl(10)
    assert flow.peak == 0
    assert await flow.reserve(4) == 4
    assert (flow.outstanding, flow.peak) == (4, 4)
    assert await flow.admit([1] * 3) == 3  # pushed by a stream, unasked: counts the same
    assert (flow.outstanding, flow.peak) == (7, 7)
    await flow.release(5)
    assert (flow.outstanding, flow.peak) == (2, 7)  # a release leaves the mark
    assert await flow.reserve(3) == 3
    assert (flow.outstanding, flow.peak) == (5, 7)  # below the mark: unchanged
    assert await flow.reserve(100) == 5
    assert (flow.outstanding, flow.peak) == (10, 10)
    assert await flow.admit([1] * 4) == 0  # an overshoot is handed back, never counted
    await flow.release(10)
    assert await flow.admit([1] * 12) == 10
    assert (flow.outstanding, flow.peak) == (10, 10)  # never above the bound


async def test_release_of_nothing_is_a_no_op() -> None:
    flow = FlowControl(3)
    await flow.reserve(2)
    await flow.release(0)
    await flow.release(-1)
    assert flow.outstanding == 2


async def test_releasing_more_than_reserved_is_an_error() -> None:
    flow = FlowControl(3)
    await flow.reserve(1)
    with pytest.raises(AssertionError):
        await flow.release(2)


async def test_cancelled_waiter_takes_nothing() -> None:
    flow = FlowControl(2)
    await flow.reserve(2)
    waiter = asyncio.create_task(flow.reserve(2))
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await flow.release(2)
    assert flow.outstanding == 0


async def test_arrived_messages_take_bytes_and_the_rest_is_refused() -> None:
    flow = FlowControl(100, max_bytes=1000)
    reserved = await flow.reserve(10)
    assert reserved == 10
    # A pull reserved 10 and brought 5 messages; only the first 3 fit 1000 bytes.
    assert await flow.admit([300, 300, 300, 300, 10], reserved) == 3
    assert (flow.outstanding, flow.outstanding_bytes) == (3, 900)  # unused count released
    assert flow.peak_bytes == 900
    await flow.release(3, 900)
    assert (flow.outstanding, flow.outstanding_bytes) == (0, 0)


async def test_an_overflow_blocks_pulls_until_something_is_released() -> None:
    """Without this, a full byte budget would turn into pulls that only hand back."""
    flow = FlowControl(100, max_bytes=1000)
    assert await flow.admit([600]) == 1
    assert await flow.admit([600]) == 0  # 1200 > 1000: handed back
    waiter = asyncio.create_task(flow.reserve(10))
    await settle()
    assert not waiter.done()  # bytes (600) are below the bound, but the last one overflowed
    await flow.release(1, 600)
    assert await asyncio.wait_for(waiter, 5) == 1  # 1000 free bytes hold one 600-byte message


async def test_reserve_waits_while_the_bytes_are_exhausted() -> None:
    flow = FlowControl(100, max_bytes=1000)
    assert await flow.admit([500, 500]) == 2
    waiter = asyncio.create_task(flow.reserve(10))
    await settle()
    assert not waiter.done()  # message room is left, byte room is not
    await flow.release(1, 500)
    assert await asyncio.wait_for(waiter, 5) == 1


async def test_a_pull_asks_for_what_the_free_bytes_hold_at_the_mean_size() -> None:
    """Asking for more would only bring messages to hand back."""
    flow = FlowControl(1000, max_bytes=10_000)
    assert await flow.reserve(100) == 100  # nothing known of the sizes yet
    assert await flow.admit([1000, 1000], reserved=100) == 2
    assert await flow.reserve(100) == 8  # 8,000 bytes free, 1,000 bytes a message
    await flow.release(8)
    await flow.release(2, 2000)
    assert await flow.reserve(100) == 10
    flow_without_bytes = FlowControl(1000)
    assert await flow_without_bytes.admit([1000, 1000]) == 2
    assert await flow_without_bytes.reserve(100) == 100


async def test_a_message_larger_than_the_byte_bound_is_taken_alone() -> None:
    flow = FlowControl(100, max_bytes=1000)
    assert await flow.admit([5000, 10]) == 1  # alone, so it is not starved forever
    assert flow.outstanding_bytes == 5000
    assert await flow.admit([10]) == 0  # nothing joins it
    await flow.release(1, 5000)
    assert await flow.admit([10, 5000]) == 1  # not alone: refused this time


async def test_bytes_never_exceed_the_bound_under_concurrency() -> None:
    flow = FlowControl(1000, max_bytes=10_000)
    rng = random.Random(99)

    async def worker() -> None:
        for _ in range(40):
            reserved = await flow.reserve(rng.randint(1, 8))
            sizes = [rng.randint(100, 3000) for _ in range(reserved)]
            admitted = await flow.admit(sizes, reserved)
            taken = sum(sizes[:admitted])
            assert flow.outstanding_bytes <= 10_000
            await asyncio.sleep(0)
            await flow.release(admitted, taken)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(10))), 30)
    assert 9000 < flow.peak_bytes <= 10_000  # the bound was reached and held
    assert (flow.outstanding, flow.outstanding_bytes) == (0, 0)
