"""Batcher triggers, driven by a fake clock: size at exactly BATCHSIZE, interval by the oldest."""

from __future__ import annotations

import pytest

from lms.ingest.pipeline.batcher import Batcher, Trigger


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_empty_batcher_has_no_trigger_and_no_deadline(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=3, interval=0.5, clock=clock)
    assert len(batcher) == 0
    assert batcher.time_left() is None
    assert batcher.due() is None
    clock.advance(3600)
    assert batcher.time_left() is None
    assert batcher.due() is None


def test_adding_nothing_starts_no_timer(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=3, interval=0.5, clock=clock)
    batcher.add([])
    batcher.add(iter([]))
    clock.advance(10)
    assert batcher.time_left() is None
    assert batcher.due() is None


def test_size_trigger_fires_exactly_at_batchsize(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=3, interval=60, clock=clock)
    batcher.add([1, 2])
    assert batcher.due() is None
    batcher.add([3])
    assert batcher.due() is Trigger.SIZE
    assert batcher.take() == [1, 2, 3]
    assert len(batcher) == 0
    assert batcher.due() is None
    assert batcher.time_left() is None


def test_take_returns_exactly_batchsize_and_keeps_the_rest_in_order(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=3, interval=60, clock=clock)
    batcher.add(range(8))
    assert len(batcher) == 8
    assert batcher.due() is Trigger.SIZE
    assert batcher.take() == [0, 1, 2]
    assert batcher.due() is Trigger.SIZE
    assert batcher.take() == [3, 4, 5]
    assert len(batcher) == 2
    assert batcher.due() is None  # the rest waits for more, or for the interval
    batcher.add([8])
    assert batcher.due() is Trigger.SIZE
    assert batcher.take() == [6, 7, 8]
    assert len(batcher) == 0


def test_take_of_a_partial_batch_returns_everything(clock: FakeClock) -> None:
    batcher: Batcher[str] = Batcher(size=5, interval=1, clock=clock)
    batcher.add("ab")
    assert batcher.take() == ["a", "b"]
    assert len(batcher) == 0
    assert batcher.time_left() is None


def test_size_trigger_does_not_wait_for_the_interval(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=1, interval=3600, clock=clock)
    batcher.add([1])
    assert batcher.due() is Trigger.SIZE


@pytest.mark.parametrize("interval", [0.25, 0.5, 1.5, 60.0])
def test_interval_trigger_fires_when_the_oldest_item_waited_interval(
    clock: FakeClock, interval: float
) -> None:
    batcher: Batcher[int] = Batcher(size=100, interval=interval, clock=clock)
    start = clock.now
    batcher.add([1])
    assert batcher.time_left() == interval
    clock.now = start + interval * 0.999
    assert batcher.due() is None
    assert batcher.time_left() == pytest.approx(interval * 0.001)
    clock.now = start + interval
    assert batcher.time_left() == 0
    assert batcher.due() is Trigger.INTERVAL
    clock.now = start + interval + 5
    assert batcher.time_left() == pytest.approx(-5)
    assert batcher.due() is Trigger.INTERVAL


def test_interval_counts_from_the_oldest_item_not_the_newest(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=100, interval=0.5, clock=clock)
    batcher.add([1])
    clock.advance(0.375)
    batcher.add([2, 3])
    assert batcher.time_left() == pytest.approx(0.125)
    clock.advance(0.125)
    assert batcher.due() is Trigger.INTERVAL
    assert batcher.take() == [1, 2, 3]
    assert batcher.time_left() is None
    assert batcher.due() is None


def test_fractional_interval_below_one_tenth_of_a_second(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=100, interval=0.05, clock=clock)
    batcher.add([1])
    clock.advance(0.04)
    assert batcher.due() is None
    clock.advance(0.02)
    assert batcher.due() is Trigger.INTERVAL


def test_timer_restarts_with_the_first_item_after_a_flush(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=100, interval=1.0, clock=clock)
    batcher.add([1])
    clock.advance(1.0)
    assert batcher.take() == [1]
    clock.advance(30)  # idle time does not count towards the next batch
    batcher.add([2])
    assert batcher.time_left() == 1.0
    assert batcher.due() is None


def test_size_wins_when_both_triggers_apply(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=2, interval=1.0, clock=clock)
    batcher.add([1, 2, 3])
    clock.advance(5)
    assert batcher.due() is Trigger.SIZE


def test_leftover_items_keep_their_arrival_time(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(size=2, interval=10.0, clock=clock)
    batcher.add([1, 2, 3])  # all three arrive at t=0
    clock.advance(4)  # e.g. the previous batch took 4 s to commit
    assert batcher.take() == [1, 2]
    clock.advance(6)  # item 3 has now waited 10 s
    assert batcher.due() is Trigger.INTERVAL


def weighed(max_bytes: int, clock: FakeClock, size: int = 100) -> Batcher[int]:
    """A batcher whose items weigh what they are (the item 300 weighs 300 bytes)."""
    return Batcher(size=size, interval=5.0, clock=clock, max_bytes=max_bytes, weight=lambda n: n)


def test_a_batch_is_cut_at_the_byte_cap_oldest_first(clock: FakeClock) -> None:
    batcher = weighed(1000, clock)
    batcher.add([300, 300])
    assert batcher.due() is None  # 600 bytes: not full yet
    batcher.add([300, 300, 50])
    assert batcher.nbytes == 1250
    assert batcher.due() is Trigger.BYTES
    assert batcher.take() == [300, 300, 300]  # the fourth would pass 1000 bytes
    assert (len(batcher), batcher.nbytes) == (2, 350)
    assert batcher.due() is None  # the rest waits for more, or for the interval
    clock.advance(5.0)
    assert batcher.due() is Trigger.INTERVAL
    assert batcher.take() == [300, 50]
    assert (len(batcher), batcher.nbytes, batcher.time_left()) == (0, 0, None)


def test_exactly_the_byte_cap_is_a_full_batch(clock: FakeClock) -> None:
    batcher = weighed(1000, clock)
    batcher.add([400, 600])
    assert batcher.due() is Trigger.BYTES
    assert batcher.take() == [400, 600]


def test_a_message_heavier_than_the_cap_goes_alone(clock: FakeClock) -> None:
    batcher = weighed(1000, clock)
    batcher.add([5000, 10, 20])
    assert batcher.due() is Trigger.BYTES
    assert batcher.take() == [5000]  # never an empty batch, never stuck
    assert batcher.due() is None
    assert batcher.take() == [10, 20]


def test_the_count_cap_still_applies_under_the_byte_cap(clock: FakeClock) -> None:
    batcher = weighed(10_000, clock, size=3)
    batcher.add([1, 2, 3, 4])
    assert batcher.due() is Trigger.SIZE
    assert batcher.take() == [1, 2, 3]
    assert batcher.nbytes == 4


def test_the_interval_of_the_rest_is_its_own_after_a_byte_cut(clock: FakeClock) -> None:
    batcher = weighed(1000, clock)
    batcher.add([600])
    clock.advance(3.0)
    batcher.add([600])
    assert batcher.take() == [600]  # cut by bytes: the second stays
    assert batcher.time_left() == pytest.approx(5.0)  # its own arrival, not the first's
