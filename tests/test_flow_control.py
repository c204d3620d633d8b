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


async def test_peak_is_the_high_water_mark_of_reserve_and_take() -> None:
    """What the pipeline test reads instead of sampling a gauge: the most ever outstanding,
    reservations and a stream's unasked messages alike, never lowered by a release."""
    flow = FlowControl(10)
    assert flow.peak == 0
    assert await flow.reserve(4) == 4
    assert (flow.outstanding, flow.peak) == (4, 4)
    assert await flow.take(3) == 3  # pushed by a stream, unasked: counts the same
    assert (flow.outstanding, flow.peak) == (7, 7)
    await flow.release(5)
    assert (flow.outstanding, flow.peak) == (2, 7)  # a release leaves the mark
    assert await flow.reserve(3) == 3
    assert (flow.outstanding, flow.peak) == (5, 7)  # below the mark: unchanged
    assert await flow.reserve(100) == 5
    assert (flow.outstanding, flow.peak) == (10, 10)
    assert await flow.take(4) == 0  # an overshoot is handed back, never counted
    await flow.release(10)
    assert await flow.take(12) == 10
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
