"""The one owner of outstanding messages: admitted by the intake, settled after commit.

A message becomes outstanding when a puller admits it (it takes flow-control capacity and a
lease) and stops being outstanding exactly once, here, when it is acked after its batch
committed or handed back (nacked) without being committed. python-pubsub's dispatcher plays
the same part: with one owner, flow control, leases and the gauges cannot disagree.

Whatever the outcome of the ack RPC, the message leaves the outstanding set: a failed ack only
means Pub/Sub redelivers a message that is already stored, and the idempotent write ignores it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog
from google.api_core import exceptions as gexc
from google.pubsub_v1 import ReceivedMessage, SubscriberAsyncClient
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from lms.ingest.received import Received
from lms.ingest.sources.pubsub.client import TRANSIENT_ERRORS
from lms.ingest.sources.pubsub.flow_control import FlowControl
from lms.ingest.sources.pubsub.keys import client_key_problem, message_key
from lms.ingest.sources.pubsub.leaser import Leaser, ack_id_chunks
from lms.ops import metrics

log = structlog.get_logger(__name__)


class Dispatcher:
    def __init__(
        self,
        client: SubscriberAsyncClient,
        subscription: str,
        flow: FlowControl,
        leaser: Leaser,
        attempts: int = 5,
        clock: Callable[[], float] = time.monotonic,
        keyed_since_micros: int | None = None,
    ) -> None:
        self._client = client
        self._subscription = subscription
        self.flow = flow
        self._leaser = leaser
        self._attempts = attempts
        self._clock = clock
        self._keyed_since = keyed_since_micros
        self.last_admitted = clock()
        """When a message was last admitted (or the dispatcher made): how long intake is idle."""
        self._sizes: dict[str, int] = {}
        """Bytes each held message took of flow control, released when it is settled."""

    @property
    def deadline(self) -> int:
        """The subscription's ack deadline, which streams ask for too."""
        return self._leaser.deadline

    @property
    def held(self) -> int:
        """Messages admitted and not yet acked or nacked."""
        return self._leaser.held

    def idle_left(self, idle: float) -> float:
        """Seconds until nothing will have been admitted for `idle` seconds (0 or less: it
        is so now). With nothing held, the subscription is then empty as far as this consumer
        can tell (`lms mon --drain`)."""
        return self.last_admitted + idle - self._clock()

    def admit(self, messages: Sequence[ReceivedMessage], sizes: Sequence[int]) -> list[Received]:
        """Make pulled messages outstanding (their capacity, `sizes` bytes each, is already
        taken) and lease them."""
        now = datetime.now(UTC).replace(tzinfo=None)
        chunk = [self._received(rm, now) for rm in messages]
        self._leaser.add(item.ack_id for item in chunk)
        self._sizes.update(zip((item.ack_id for item in chunk), sizes, strict=True))
        self.last_admitted = self._clock()
        metrics.MESSAGES_RECEIVED.inc(len(chunk))
        self._gauges()
        return chunk

    def _received(self, rm: ReceivedMessage, now: datetime) -> Received:
        message = rm.message
        published = message.publish_time
        micros = published.seconds * 1_000_000 + published.nanos // 1000
        return Received(
            rm.ack_id,
            message.message_id,
            message.data,
            published.seconds + published.nanos / 1e9,
            now,
            message_key(message.message_id, micros, message.attributes, self._keyed_since),
            client_key_problem(message.attributes),
        )

    async def ack(self, ack_ids: list[str]) -> None:
        """Acknowledge messages whose batch committed; they stop being outstanding."""
        try:
            await asyncio.gather(
                *(self._acknowledge(chunk) for chunk in ack_id_chunks(ack_ids)),
            )
            metrics.MESSAGES_ACKED.inc(len(ack_ids))
        except gexc.GoogleAPICallError as exc:
            log.error(
                "ack failed after retries; Pub/Sub will redeliver, duplicates are ignored",
                count=len(ack_ids),
                error=repr(exc),
            )
        finally:
            await self._settle(ack_ids)

    async def nack(self, ack_ids: list[str]) -> None:
        """Hand back held, uncommitted messages so Pub/Sub redelivers them now, not at lease
        expiry; they stop being outstanding."""
        try:
            await self.hand_back(ack_ids)
        finally:
            await self._settle(ack_ids)

    async def nack_held(self) -> int:
        """Hand back every message still held (shutdown abandoned their batches)."""
        held = self._leaser.snapshot()
        if held:
            await self.nack(held)
        return len(held)

    async def hand_back(self, ack_ids: list[str]) -> None:
        """Deadline 0 for messages this process will not store: they are redelivered at once.

        Also for messages never admitted (a stream overshooting flow control); a failure only
        delays their redelivery to the lease's expiry.
        """
        if ack_ids:
            await self._leaser.extend(ack_ids, 0)
            metrics.MESSAGES_NACKED.inc(len(ack_ids))

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

    async def _settle(self, ack_ids: list[str]) -> None:
        self._leaser.remove(ack_ids)
        nbytes = sum(self._sizes.pop(ack_id, 0) for ack_id in ack_ids)
        await self.flow.release(len(ack_ids), nbytes)
        self._gauges()

    def _gauges(self) -> None:
        metrics.OUTSTANDING.set(self._leaser.held)
        metrics.OUTSTANDING_BYTES.set(self.flow.outstanding_bytes)
