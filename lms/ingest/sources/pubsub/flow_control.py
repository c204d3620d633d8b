"""Flow control: a hard bound on received-but-unacked messages, by count and by bytes.

Count capacity is reserved before a pull and the pull asks for at most what was reserved, so
that bound holds exactly. A message's size is only known once it has arrived, so bytes are
taken on arrival: the longest prefix of a response that fits is admitted and the rest is handed
back to Pub/Sub, so the byte bound holds exactly too. A message larger than the whole byte
bound is admitted when nothing else is outstanding (as python-pubsub's own flow control does),
so it is processed alone instead of starving. After a response overflowed, no pull starts until
something is released, and a pull asks for no more messages than the free bytes hold at the
mean size of those admitted so far, so a full budget does not turn into pulls that only hand
back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence


class FlowControl:
    def __init__(self, max_outstanding: int, max_bytes: int | None = None) -> None:
        self.max_outstanding = max_outstanding
        self.max_bytes = max_bytes
        """Bound on the bytes of outstanding messages; None: count only."""
        self._outstanding = 0
        self._bytes = 0
        self._overflowed = False
        self._mean_size: float | None = None
        self.peak = 0
        """The most messages ever outstanding at once (reservations included): proof of the
        bound."""
        self.peak_bytes = 0
        """The most bytes ever outstanding at once."""
        self._changed = asyncio.Condition()

    @property
    def outstanding(self) -> int:
        return self._outstanding

    @property
    def outstanding_bytes(self) -> int:
        return self._bytes

    async def reserve(self, at_most: int) -> int:
        """Wait for free capacity (messages, and bytes not exhausted), then take up to
        `at_most` messages of it."""
        async with self._changed:
            await self._changed.wait_for(self._has_room)
            granted = min(at_most, self.max_outstanding - self._outstanding)
            if self.max_bytes is not None and self._mean_size:
                expected = int((self.max_bytes - self._bytes) // self._mean_size)
                granted = min(granted, max(1, expected))
            self._take(granted, 0)
            return granted

    async def admit(self, sizes: Sequence[int], reserved: int = 0) -> int:
        """Take room for the longest prefix of arrived messages (of `sizes` bytes) that fits.

        `reserved` messages of count were reserved before the pull that brought them (0 for
        messages a stream pushed unasked); what the prefix does not use is released. Returns
        the prefix's length: the caller hands the rest back to Pub/Sub, so both bounds stay
        exact even when a response (or a stream) brings more than fits.
        """
        async with self._changed:
            room = self.max_outstanding - self._outstanding + reserved
            admitted, total = 0, 0
            for size in sizes[:room]:
                fits = self.max_bytes is None or self._bytes + total + size <= self.max_bytes
                alone = self._bytes == 0 and admitted == 0
                if not (fits or alone):
                    self._overflowed = True
                    break
                admitted += 1
                total += size
            self._take(admitted - reserved, total)
            if admitted:
                mean = total / admitted
                self._mean_size = mean if self._mean_size is None else (self._mean_size + mean) / 2
            if admitted < reserved:
                self._changed.notify_all()
            return admitted

    async def release(self, count: int, nbytes: int = 0) -> None:
        if count <= 0 and nbytes <= 0:
            return
        async with self._changed:
            self._outstanding -= max(count, 0)
            self._bytes -= max(nbytes, 0)
            assert self._outstanding >= 0, "released more messages than were reserved"
            assert self._bytes >= 0, "released more bytes than were taken"
            self._overflowed = False
            self._changed.notify_all()

    def _has_room(self) -> bool:
        if self._outstanding >= self.max_outstanding:
            return False
        if self.max_bytes is None:
            return True
        return not self._overflowed and self._bytes < self.max_bytes

    def _take(self, count: int, nbytes: int) -> None:
        self._outstanding += count
        self._bytes += nbytes
        self.peak = max(self.peak, self._outstanding)
        self.peak_bytes = max(self.peak_bytes, self._bytes)
