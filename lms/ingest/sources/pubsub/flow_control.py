"""Flow control: a hard bound on received-but-unacked messages.

Capacity is reserved before a pull and the pull asks for at most what was reserved, so the
bound holds exactly, not approximately; a backlog of any size costs bounded memory.
"""

from __future__ import annotations

import asyncio


class FlowControl:
    def __init__(self, max_outstanding: int) -> None:
        self.max_outstanding = max_outstanding
        self._outstanding = 0
        self.peak = 0
        """The most ever outstanding at once (reservations included): proof of the bound."""
        self._changed = asyncio.Condition()

    @property
    def outstanding(self) -> int:
        return self._outstanding

    async def reserve(self, at_most: int) -> int:
        """Wait for free capacity, then take up to `at_most` of it."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._outstanding < self.max_outstanding)
            granted = min(at_most, self.max_outstanding - self._outstanding)
            self._take(granted)
            return granted

    async def take(self, count: int) -> int:
        """Take up to `count` without waiting, for messages a stream pushed unasked.

        Returns how many fit; the caller hands the rest back to Pub/Sub, so the bound stays
        exact even if the server overshoots its own flow control.
        """
        async with self._changed:
            granted = max(0, min(count, self.max_outstanding - self._outstanding))
            self._take(granted)
            return granted

    async def release(self, count: int) -> None:
        if count <= 0:
            return
        async with self._changed:
            self._outstanding -= count
            assert self._outstanding >= 0, "released more messages than were reserved"
            self._changed.notify_all()

    def _take(self, count: int) -> None:
        self._outstanding += count
        self.peak = max(self.peak, self._outstanding)
