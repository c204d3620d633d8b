"""Lease management: held messages stay ours until their batch is committed and acked.

Without it, a FLUSHINTERVAL longer than the subscription's ack deadline (or a slow database)
would let Pub/Sub redeliver messages we are still holding, to us or to another replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog
from google.api_core import exceptions as gexc
from google.pubsub_v1 import SubscriberAsyncClient

log = structlog.get_logger(__name__)

ACK_ID_CHUNK = 1000


class Leaser:
    def __init__(self, client: SubscriberAsyncClient, subscription: str, deadline: int) -> None:
        self._client = client
        self._subscription = subscription
        self.deadline = deadline
        self._held: set[str] = set()

    @property
    def period(self) -> float:
        """Extend well before expiry: a third of the deadline leaves room for a slow RPC."""
        return max(self.deadline / 3, 1.0)

    @property
    def held(self) -> int:
        """Messages received and not yet acked or nacked (capacity reserved for a pull is not)."""
        return len(self._held)

    def add(self, ack_ids: Iterable[str]) -> None:
        self._held.update(ack_ids)

    def remove(self, ack_ids: Iterable[str]) -> None:
        self._held.difference_update(ack_ids)

    def snapshot(self) -> list[str]:
        """The ack ids held now, as a list that later changes to the set do not affect."""
        return list(self._held)

    async def run(self) -> None:
        """Extend every held lease each period until cancelled."""
        while True:
            await asyncio.sleep(self.period)
            await self.extend(self.snapshot(), self.deadline)

    async def extend(self, ack_ids: list[str], seconds: int) -> None:
        """Set the deadline of `ack_ids`; 0 hands them back for redelivery at once."""
        for chunk in ack_id_chunks(ack_ids):
            try:
                await self._client.modify_ack_deadline(
                    subscription=self._subscription,
                    ack_ids=chunk,
                    ack_deadline_seconds=seconds,
                    timeout=30,
                )
            except gexc.GoogleAPICallError as exc:
                log.warning(
                    "lease extension failed; messages may be redelivered (stored once anyway)",
                    count=len(chunk),
                    error=repr(exc),
                )


def ack_id_chunks(ack_ids: list[str]) -> list[list[str]]:
    """Ack ids in groups of at most ACK_ID_CHUNK, the most one request may carry."""
    return [ack_ids[start : start + ACK_ID_CHUNK] for start in range(0, len(ack_ids), ACK_ID_CHUNK)]
