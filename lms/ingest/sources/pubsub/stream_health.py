"""When a StreamingPull stream must prove it is alive: the health check's decisions, with an
injected clock so that they are tested without waiting.

A stream whose connection died without a reset (a network that drops packets, a NAT that
forgot the flow, a blackholed proxy) never fails by itself: the read just waits, and gRPC's
keepalive notices only after its own timers. Silence alone proves nothing, though: an idle
subscription or a stream held back by flow control (the server sends nothing while the
stream's share of MAX_OUTSTANDING is unacked) is silent too. So a stream silent for `silence`
seconds while it waits for the server is probed with a cheap unary call on the same channel
(hence the same HTTP/2 connection): an answer within `probe_timeout` counts as hearing from
the server, no answer means the connection is dead, and the stream is cancelled and reopened.

Silence counts only while the stream waits for the server, not while it queues what it got:
a stream blocked on its own consumer is not the server's fault, and cancelling it there could
drop messages it has already admitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SILENCE_SECONDS = 10.0
"""Seconds of silence from the server before the stream's connection is probed."""
PROBE_TIMEOUT_SECONDS = 5.0
"""Seconds the probe may take; past them the connection is taken as dead."""


class StreamHealth:
    """The state of one stream as its health check sees it."""

    def __init__(
        self,
        silence: float = SILENCE_SECONDS,
        probe_timeout: float = PROBE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.silence = silence
        self.probe_timeout = probe_timeout
        self._clock = clock
        self._heard = clock()
        self._waiting = True
        self.probes = 0

    def heard(self) -> None:
        """The server answered: a response on the stream, or an answered probe."""
        self._heard = self._clock()

    def busy(self) -> None:
        """The stream handles what it received; silence does not count meanwhile."""
        self._waiting = False

    def waiting(self) -> None:
        """The stream waits for the server's next response again."""
        self._heard = self._clock()
        self._waiting = True

    @property
    def is_waiting(self) -> bool:
        return self._waiting

    def probe_in(self) -> float:
        """Seconds until a probe is due (0: now), if nothing is heard meanwhile."""
        if not self._waiting:
            return self.silence
        return max(0.0, self._heard + self.silence - self._clock())

    def probe_started(self) -> float:
        """Note a probe; the time it started, for `dead_after`."""
        self.probes += 1
        return self._clock()

    def dead_after(self, probe_started: float) -> bool:
        """After a probe (started at `probe_started`) got no answer: is the stream dead?

        Not if the stream heard from the server since the probe started, or stopped waiting
        for it (it is handling a response): then the connection works and the probe was
        merely slow.
        """
        return self._waiting and self._heard <= probe_started
