"""Acknowledging committed messages, and handing uncommitted ones back.

Every message leaves the outstanding set exactly once, through here, whatever the outcome of
the RPC: a failed ack only means Pub/Sub redelivers a message that is already stored, and the
idempotent write ignores it.
"""

from __future__ import annotations

import asyncio

import structlog
from google.api_core import exceptions as gexc
from google.pubsub_v1 import SubscriberAsyncClient
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from lms import metrics
from lms.flow_control import FlowControl
from lms.leaser import ACK_ID_CHUNK, Leaser
from lms.pubsub import TRANSIENT_ERRORS

log = structlog.get_logger("lms.acker")


class Acker:
    def __init__(
        self,
        client: SubscriberAsyncClient,
        subscription: str,
        flow: FlowControl,
        leaser: Leaser,
        attempts: int = 5,
    ) -> None:
        self._client = client
        self._subscription = subscription
        self._flow = flow
        self._leaser = leaser
        self._attempts = attempts

    async def ack(self, ack_ids: list[str]) -> None:
        try:
            await asyncio.gather(
                *(
                    self._acknowledge(ack_ids[start : start + ACK_ID_CHUNK])
                    for start in range(0, len(ack_ids), ACK_ID_CHUNK)
                )
            )
            metrics.MESSAGES_ACKED.inc(len(ack_ids))
        except gexc.GoogleAPICallError as exc:
            log.error(
                "ack failed after retries; Pub/Sub will redeliver, duplicates are ignored",
                count=len(ack_ids),
                error=repr(exc),
            )
        finally:
            await self._done(ack_ids)

    async def nack(self, ack_ids: list[str]) -> None:
        """Release uncommitted messages so Pub/Sub redelivers them now, not at lease expiry."""
        try:
            await self._leaser.extend(ack_ids, 0)
            metrics.MESSAGES_NACKED.inc(len(ack_ids))
        finally:
            await self._done(ack_ids)

    async def _acknowledge(self, chunk: list[str]) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                await self._client.acknowledge(
                    subscription=self._subscription, ack_ids=chunk, timeout=30, retry=None
                )

    async def _done(self, ack_ids: list[str]) -> None:
        self._leaser.remove(ack_ids)
        await self._flow.release(len(ack_ids))
        metrics.OUTSTANDING.set(self._leaser.held)
