"""StreamingPull intake: the server pushes messages over long-lived streams.

On real Pub/Sub one stream delivers far more than one Pull loop and with lower latency; the
emulator paces each stream (about 2,000 messages/s), so use PULL_MODE=pull there. Flow control
stays exact: each stream asks the server for at most its share of MAX_OUTSTANDING and
MAX_OUTSTANDING_BYTES, and any message beyond either bound is handed straight back instead of
being held.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator

import structlog
from google.pubsub_v1 import StreamingPullRequest, StreamingPullResponse

from lms.ingest.sources.pubsub.pull import PullSubscriber

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 30.0
DRAIN_SECONDS = 5.0


class StreamingSubscriber(PullSubscriber):
    """Same contract as `PullSubscriber` (chunks on the queue, leases, flow control)."""

    async def _pull_loop(self) -> None:
        """Keep one stream open; Pub/Sub closes streams now and then, so reopen them.

        Each stream gets a fresh client id: the server keeps flow-control state per id, and
        would count messages lost with a broken stream against the new one until they expire.
        """
        retrying = self._retrying()
        while not self._stopping.is_set():
            await retrying(self._stream, uuid.uuid4().hex)

    async def _stream(self, client_id: str) -> None:
        call = await self._client.streaming_pull(requests=self._requests(client_id))
        reader = asyncio.ensure_future(self._read(call))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                # The request stream is closed now; read what the server still sends.
                done, _ = await asyncio.wait({reader}, timeout=DRAIN_SECONDS)
                if not done:
                    reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        finally:
            stopping.cancel()
            reader.cancel()

    async def _read(self, call: AsyncIterable[StreamingPullResponse]) -> None:
        async for response in call:
            messages = StreamingPullResponse.pb(response).received_messages
            if not messages:
                continue
            await self._admit(messages, reserved=0)

    async def _requests(self, client_id: str) -> AsyncIterator[StreamingPullRequest]:
        yield StreamingPullRequest(
            subscription=self._subscription,
            stream_ack_deadline_seconds=self._dispatcher.deadline,
            max_outstanding_messages=max(1, self._flow.max_outstanding // self._pullers),
            max_outstanding_bytes=(self._flow.max_bytes or 0) // self._pullers,  # 0: no bound
            client_id=client_id,
        )
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), HEARTBEAT_SECONDS)
            if not self._stopping.is_set():
                yield StreamingPullRequest()
