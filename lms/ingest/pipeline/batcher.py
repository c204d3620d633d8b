"""When to flush: pure logic with an injected clock, so the triggers are unit-testable.

A batch is flushed when it is full, by count (exactly BATCHSIZE messages) or by bytes (as many
oldest messages as fit BATCH_MAX_BYTES, at least one), the rest staying for the next batch; or
when its oldest message has waited FLUSHINTERVAL seconds. The byte cap keeps one transaction
small enough to commit within DB_TIMEOUT whatever the messages weigh.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Trigger(enum.StrEnum):
    SIZE = "size"
    BYTES = "bytes"
    INTERVAL = "interval"
    SHUTDOWN = "shutdown"


class Batcher(Generic[T]):
    def __init__(
        self,
        size: int,
        interval: float,
        clock: Callable[[], float],
        max_bytes: int | None = None,
        weight: Callable[[T], int] = lambda _item: 0,
    ) -> None:
        self.size = size
        self.interval = interval
        self.max_bytes = max_bytes
        """Bytes a batch holds at most (None: no cap), each item weighing `weight(item)`."""
        self._clock = clock
        self._weight = weight
        self._items: list[T] = []
        self._weights: list[int] = []
        self._bytes = 0
        self._arrivals: deque[tuple[float, int]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of everything buffered."""
        return self._bytes

    def add(self, items: Iterable[T]) -> None:
        before = len(self._items)
        for item in items:
            weight = self._weight(item)
            self._items.append(item)
            self._weights.append(weight)
            self._bytes += weight
        if len(self._items) > before:
            self._arrivals.append((self._clock(), len(self._items) - before))

    def due(self) -> Trigger | None:
        """The trigger that applies now, if any."""
        if len(self._items) >= self.size:
            return Trigger.SIZE
        if self.max_bytes is not None and self._items and self._bytes >= self.max_bytes:
            return Trigger.BYTES
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
        """Remove and return the next batch, oldest first: at most `size` items and at most
        `max_bytes` bytes, but at least one item (one heavier than the cap goes alone)."""
        count = min(self.size, len(self._items))
        if self.max_bytes is not None:
            total = 0
            for index, weight in enumerate(self._weights[:count]):
                if index and total + weight > self.max_bytes:
                    count = index
                    break
                total += weight
        batch, self._items = self._items[:count], self._items[count:]
        self._bytes -= sum(self._weights[:count])
        del self._weights[:count]
        taken = count
        while taken:
            arrived, arrivals = self._arrivals.popleft()
            if arrivals > taken:
                self._arrivals.appendleft((arrived, arrivals - taken))
                break
            taken -= arrivals
        return batch
