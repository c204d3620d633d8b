"""What `lms pub` and `lms sim` count, and how they send: in chunks, a few at a time.

A sender counts a log only once its destination confirmed it (Pub/Sub's Publish answer, or
`lms api`'s 202), per (service, severity), so the totals are exactly what `lms mon` must end
up storing, however the logs travelled.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field

from lms.settings import Settings

Key = tuple[str, str]
Message = tuple[bytes, Key]
"""A log's body and the (service, severity) it counts for."""


@dataclass
class Tally:
    """Confirmed publishes per (service, severity)."""

    counts: Counter[Key] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_report(self) -> dict[str, object]:
        return {
            "published": self.total,
            "seconds": round(self.seconds, 3),
            "totals": [
                {"service": service, "severity": severity, "count": count}
                for (service, severity), count in sorted(self.counts.items())
            ],
        }

    def table(self) -> str:
        lines = [f"{'service':<24} {'severity':<8} {'count':>10}"]
        lines += [
            f"{service:<24} {severity:<8} {count:>10}"
            for (service, severity), count in sorted(self.counts.items())
        ]
        rate = self.total / self.seconds if self.seconds else 0.0
        lines.append(f"{'total':<33} {self.total:>10}  ({self.seconds:.2f} s, {rate:,.0f} msg/s)")
        return "\n".join(lines)


class Sender(ABC):
    """Sends in requests of PUBLISH_BATCH_SIZE logs, PUBLISH_CONCURRENCY at a time."""

    def __init__(self, settings: Settings) -> None:
        self._batch_size = settings.publish_batch_size
        self._slots = asyncio.Semaphore(settings.publish_concurrency)
        self.tally = Tally()

    async def publish(self, messages: list[Message]) -> None:
        """Send all of `messages`, counting each request once it is confirmed."""
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(messages), self._batch_size):
                await self._slots.acquire()
                group.create_task(self._counted(messages[start : start + self._batch_size]))

    async def _counted(self, chunk: list[Message]) -> None:
        try:
            await self._request(chunk)
        finally:
            self._slots.release()
        self.tally.counts.update(key for _, key in chunk)

    @abstractmethod
    async def _request(self, chunk: list[Message]) -> None:
        """Send `chunk` and return once its destination confirmed all of it, else raise."""
