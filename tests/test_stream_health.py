"""The StreamingPull health check's decisions (lms.ingest.sources.pubsub.stream_health), with
an injected clock: when a silent stream is probed, and when a probe that got no answer means
the stream is dead. The stream itself against a cut and blackholed link is fault scenario 3
(tests/test_faults.py, PULL_MODE=streaming)."""

from __future__ import annotations

import pytest

from lms.ingest.sources.pubsub.stream_health import StreamHealth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def health_of(clock: Clock) -> StreamHealth:
    return StreamHealth(silence=10.0, probe_timeout=5.0, clock=clock)


def test_a_silent_stream_is_probed_after_the_silence(clock: Clock) -> None:
    health = health_of(clock)
    assert health.probe_in() == 10.0
    clock.now += 4
    assert health.probe_in() == 6.0
    clock.now += 6
    assert health.probe_in() == 0.0
    clock.now += 30  # never negative, however late the watchdog wakes
    assert health.probe_in() == 0.0


def test_every_response_restarts_the_silence(clock: Clock) -> None:
    health = health_of(clock)
    for _ in range(5):
        clock.now += 9
        health.busy()
        health.waiting()
        assert health.probe_in() == 10.0


def test_silence_does_not_count_while_the_stream_handles_what_it_got(clock: Clock) -> None:
    """A stream blocked on its own queue (a slow database) is not the server's fault."""
    health = health_of(clock)
    health.busy()
    clock.now += 120
    assert health.probe_in() == 10.0  # re-checked later, never due while busy
    health.waiting()
    assert health.probe_in() == 10.0  # the silence starts when it waits again
    clock.now += 10
    assert health.probe_in() == 0.0


def test_an_answered_probe_restarts_the_silence(clock: Clock) -> None:
    """An idle subscription, or a stream held back by flow control, is silent but alive."""
    health = health_of(clock)
    clock.now += 10
    health.probe_started()
    clock.now += 0.2
    health.heard()
    assert health.probe_in() == 10.0
    assert health.probes == 1


def test_a_probe_without_answer_means_dead(clock: Clock) -> None:
    health = health_of(clock)
    clock.now += 10
    started = health.probe_started()
    clock.now += 5
    assert health.dead_after(started)


def test_a_response_during_the_probe_means_alive(clock: Clock) -> None:
    """The probe was slow, the stream was not: it must not be cancelled."""
    health = health_of(clock)
    clock.now += 10
    started = health.probe_started()
    clock.now += 1
    health.busy()  # a response arrived, and is being handled
    clock.now += 4
    assert not health.dead_after(started)
    health.waiting()  # handled; waiting again, with a fresh silence
    assert not health.dead_after(started)
    assert health.probe_in() == 10.0


def test_a_stream_that_never_opened_is_probed_too(clock: Clock) -> None:
    """Opening a stream over a dead connection waits forever: the silence counts from the
    start, before any response."""
    health = health_of(clock)
    assert health.is_waiting
    clock.now += 10
    started = health.probe_started()
    clock.now += 5
    assert health.dead_after(started)
