"""When to flush: pure logic with an injected clock, so the triggers are unit-testable.

A batch is flushed when it reaches BATCHSIZE (exactly BATCHSIZE messages; the rest stays for
the next batch) or when its oldest message has waited FLUSHINTERVAL seconds.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Trigger(enum.StrEnum):
    SIZE = "size"
    INTERVAL = "interval"
    SHUTDOWN = "shutdown"


class Batcher(Generic[T]):
    def __init__(self, size: int, interval: float, clock: Callable[[], float]) -> None:
        self.size = size
        self.interval = interval
        self._clock = clock
        self._items: list[T] = []
        self._arrivals: deque[tuple[float, int]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[T]) -> None:
        before = len(self._items)
        self._items.extend(items)
        if len(self._items) > before:
            self._arrivals.append((self._clock(), len(self._items) - before))

    def due(self) -> Trigger | None:
        """The trigger that applies now, if any."""
        if len(self._items) >= self.size:
            return Trigger.SIZE
        left = self.time_left()
        if left is not None and left <= 0:
            return Trigger.INTERVAL
        return None

    def time_left(self) -> float | None:
        """Seconds until the interval trigger fires; None while the buffer is empty."""
        if not self._arrivals:
            return None
        return self._arrivals[0][0] + self.interval - self._clock()

    def take(self) -> list[T]:
        """Remove and return the next batch: at most `size` items, oldest first."""
        batch, self._items = self._items[: self.size], self._items[self.size :]
        taken = len(batch)
        while taken:
            arrived, count = self._arrivals.popleft()
            if count > taken:
                self._arrivals.appendleft((arrived, count - taken))
                break
            taken -= count
        return batch
