"""StreamingPull intake: the server pushes messages over long-lived streams.

On real Pub/Sub one stream delivers far more than one Pull loop and with lower latency; the
emulator paces each stream (about 2,000 messages/s), so use PULL_MODE=pull there. Flow control
stays exact: each stream asks the server for at most its share of MAX_OUTSTANDING and
MAX_OUTSTANDING_BYTES, and any message beyond either bound is handed straight back instead of
being held.

A stream is opened without the client library's own retry (which would silently retry the
open for up to 30 minutes, backing off to a minute, and reuse a request iterator whose first
request was already sent): a failed or dead stream goes back to `_pull_loop`, which logs it
and opens a new one. A stream whose connection died silently is found by its health check
(lms.ingest.sources.pubsub.stream_health) and replaced within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator

import grpc
import structlog
from google.api_core import exceptions as gexc
from google.pubsub_v1 import StreamingPullRequest, StreamingPullResponse

from lms.ingest.sources.pubsub.client import TRANSIENT_ERRORS
from lms.ingest.sources.pubsub.pull import PullSubscriber
from lms.ingest.sources.pubsub.stream_health import StreamHealth

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 30.0
DRAIN_SECONDS = 5.0


class StreamDead(Exception):
    """A stream's connection stopped answering: retried (and logged) like a failed pull."""


class StreamingSubscriber(PullSubscriber):
    """Same contract as `PullSubscriber` (chunks on the queue, leases, flow control)."""

    retried = (*TRANSIENT_ERRORS, StreamDead)

    async def _pull_loop(self) -> None:
        """Keep one stream open; Pub/Sub closes streams now and then, so reopen them.

        Each stream gets a fresh client id: the server keeps flow-control state per id, and
        would count messages lost with a broken stream against the new one until they expire.
        """
        retrying = self._retrying()
        while not self._stopping.is_set():
            await retrying(self._stream, uuid.uuid4().hex)

    async def _stream(self, client_id: str) -> None:
        health = StreamHealth()
        reader = asyncio.ensure_future(self._read(client_id, health))
        stopping = asyncio.ensure_future(self._stopping.wait())
        watchdog = asyncio.ensure_future(self._watch(health))
        try:
            await asyncio.wait({reader, stopping, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            if watchdog.done() and not reader.done():
                # Dead: the reader waits for the server (the watchdog made sure), so it holds
                # nothing to lose; the watchdog's StreamDead goes to the retry, which logs it.
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                watchdog.result()
            watchdog.cancel()
            if not reader.done():
                # The request stream is closed now; read what the server still sends.
                done, _ = await asyncio.wait({reader}, timeout=DRAIN_SECONDS)
                if not done:
                    reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        finally:
            stopping.cancel()
            watchdog.cancel()
            reader.cancel()
            if watchdog.done() and not watchdog.cancelled():
                watchdog.exception()  # found dead as the stream ended anyway: retrieved

    async def _read(self, client_id: str, health: StreamHealth) -> None:
        call: AsyncIterable[StreamingPullResponse] = await self._client.streaming_pull(
            requests=self._requests(client_id), retry=None
        )
        health.waiting()
        try:
            async for response in call:
                health.busy()
                messages = StreamingPullResponse.pb(response).received_messages
                if messages:
                    await self._admit(messages, reserved=0)
                health.waiting()
        finally:
            # A stream given up on (found dead, or not drained in time) ends on the wire
            # too, with its request iterator, rather than whenever gRPC notices.
            if isinstance(call, grpc.aio.Call):
                call.cancel()

    async def _watch(self, health: StreamHealth) -> None:
        """Returns never; raises StreamDead once the stream's connection is found dead."""
        while True:
            await asyncio.sleep(health.probe_in())
            if health.probe_in() > 0:
                continue
            started = health.probe_started()
            try:
                await self._client.get_subscription(
                    subscription=self._subscription, timeout=health.probe_timeout, retry=None
                )
            except (gexc.DeadlineExceeded, gexc.ServiceUnavailable) as exc:
                if health.dead_after(started):
                    raise StreamDead(
                        f"no answer from Pub/Sub for {health.silence:g} s, nor to a probe"
                        f" within {health.probe_timeout:g} s; reopening the stream"
                    ) from exc
                continue
            except gexc.GoogleAPICallError:
                pass  # an error is an answer too: the connection works
            health.heard()

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
