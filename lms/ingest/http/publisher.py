"""Publishing accepted logs to Pub/Sub for HTTP ingestion: 2xx only once Pub/Sub confirmed.

The messages of concurrent requests share Publish RPCs (lms.ingest.http.batcher: a batch
collects for INGEST_LINGER seconds or up to the Publish limit), sent on the event loop with the
async client. A request waits until every batch it landed in is confirmed, at most
INGEST_PUBLISH_TIMEOUT seconds, and is otherwise answered 503 (nothing promised); a batch's
RPC is given up at the same bound, so nothing is retried behind a client's back for longer.

Memory is bounded by bytes: a request is admitted only if its bytes fit under
INGEST_MAX_INFLIGHT_BYTES together with everything still unconfirmed, all or nothing, so a
429 never means "some of it was published". Bytes stay in flight until their batch's RPC
ended, confirmed or failed, even after the request gave up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog
from google.api_core import exceptions as gexc
from google.pubsub_v1 import PublisherAsyncClient, PublishRequest

from lms.ingest.http.batcher import Batch, Batcher
from lms.ingest.http.edge import Accepted
from lms.ingest.http.errors import Overloaded, PublishUnavailable
from lms.ingest.sources.pubsub.client import publisher_client
from lms.ingest.sources.pubsub.keys import KEY_ATTRIBUTE
from lms.settings import Settings

log = structlog.get_logger(__name__)

MAX_PUBLISH_BYTES = 9_000_000
"""Bytes of one Publish request: below Pub/Sub's 10 MB limit, with room for its framing."""
MAX_PUBLISH_MESSAGES = 1000
"""Messages of one Publish request: Pub/Sub's limit."""
RETRY_AFTER = 1.0
"""Seconds a 429 or 503 asks the client to wait before it retries."""
PING_TIMEOUT = 5.0
"""Seconds /readyz waits for Pub/Sub at most: a probe must answer before its own timeout."""


RawRequest = type(PublishRequest.pb(PublishRequest()))
"""The protobuf class under proto-plus's PublishRequest. Its messages are added to it raw,
one `messages.add` each (~0.3 us), where a proto-plus PubsubMessage takes ~20 us and a raw
one built apart and then copied into the request ~1 us: at thousands of logs per second
this was most of the CPU."""


def message_size(item: Accepted) -> int:
    """Bytes of a log as a Pub/Sub message: its body and its key attribute."""
    key = len(KEY_ATTRIBUTE) + len(item.key.encode()) if item.key is not None else 0
    return len(item.data) + key


class LogPublisher:
    """Publishes to `settings.topic_path`; one per `lms api` process, shared by requests.

    Its gRPC channel belongs to one event loop, so it is opened on the loop that serves the
    requests: by `connect` (the app's lifespan, so missing credentials stop start-up), else
    by the first request.
    """

    def __init__(
        self, settings: Settings, on_inflight: Callable[[int], None] | None = None
    ) -> None:
        """`on_inflight` hears every change of the bytes in flight (for a gauge)."""
        self._topic = settings.topic_path
        self._on_inflight = on_inflight
        self._timeout = settings.ingest_publish_timeout
        self._max_inflight = settings.ingest_max_inflight_bytes
        self._inflight = 0
        self._closed = False
        self._settings = settings
        self._client: PublisherAsyncClient | None = None
        self._batcher: Batcher[Accepted] = Batcher(
            self._send,
            linger=settings.ingest_linger,
            max_messages=MAX_PUBLISH_MESSAGES,
            max_bytes=MAX_PUBLISH_BYTES,
            on_done=self._release,
        )

    def connect(self) -> PublisherAsyncClient:
        """The client, made on the running loop at the first call (raises google-auth's
        DefaultCredentialsError without credentials)."""
        if self._client is None:
            self._client = publisher_client(self._settings)
        return self._client

    @property
    def inflight_bytes(self) -> int:
        """Bytes published and not yet confirmed (or given up on)."""
        return self._inflight

    async def publish(self, logs: Sequence[Accepted]) -> list[str]:
        """Publish `logs` and wait until Pub/Sub confirmed every one; their message ids.

        Raises Overloaded (429) before publishing anything when the bytes do not fit, and
        PublishUnavailable (503) when Pub/Sub does not confirm in time or fails.
        """
        if self._closed:
            raise PublishUnavailable("lms api is shutting down; retry", retry_after=RETRY_AFTER)
        sizes = [message_size(item) for item in logs]
        size = sum(sizes)
        if self._inflight + size > self._max_inflight and self._inflight > 0:
            raise Overloaded(
                f"{self._inflight} bytes are being published, the bound is"
                f" {self._max_inflight} (INGEST_MAX_INFLIGHT_BYTES); retry later",
                retry_after=RETRY_AFTER,
            )
        self._change_inflight(size)
        slots = self._batcher.add_all(logs, sizes)
        results = [batch.result for batch in Batcher.batches(slots)]
        _done, pending = await asyncio.wait(results, timeout=self._timeout)
        if pending:
            raise self._unconfirmed()
        try:
            return Batcher.message_ids(slots)
        except TimeoutError:
            raise self._unconfirmed() from None
        except gexc.GoogleAPICallError as exc:
            log.warning("publish failed", error=str(exc), logs=len(logs))
            raise PublishUnavailable(
                f"Pub/Sub refused the publish ({exc.__class__.__name__}); retry it",
                retry_after=RETRY_AFTER,
            ) from exc

    def _unconfirmed(self) -> PublishUnavailable:
        return PublishUnavailable(
            f"Pub/Sub did not confirm within {self._timeout:g} s"
            " (INGEST_PUBLISH_TIMEOUT); nothing of this request is promised, retry it",
            retry_after=RETRY_AFTER,
        )

    async def _send(self, logs: list[Accepted]) -> Sequence[str]:
        """One Publish RPC, retried by the client on transient errors, given up at the
        bound a request waits for, so bytes in flight are never held much longer. The raw
        request is wrapped, not converted, into the client's proto-plus type."""
        raw = RawRequest(topic=self._topic)
        add = raw.messages.add
        for item in logs:
            if item.key is None:
                add(data=item.data)
            else:
                add(data=item.data, attributes={KEY_ATTRIBUTE: item.key})
        request = PublishRequest.wrap(raw)
        async with asyncio.timeout(self._timeout):
            response = await self.connect().publish(request=request, timeout=self._timeout)
        return list(response.message_ids)

    async def ping(self) -> None:
        """Ask Pub/Sub for the topic, once, without retries: raises PublishUnavailable when
        it cannot be reached or the topic is missing, so /readyz takes an ingest node whose
        publishes would fail out of the load balancer before clients see 503s."""
        timeout = min(self._timeout, PING_TIMEOUT)
        try:
            async with asyncio.timeout(timeout):
                await self.connect().get_topic(topic=self._topic, retry=None, timeout=timeout)
        except gexc.NotFound:
            raise PublishUnavailable(
                "the Pub/Sub topic does not exist", retry_after=RETRY_AFTER
            ) from None
        except (gexc.GoogleAPIError, TimeoutError) as exc:
            log.warning("pubsub ping failed", error=str(exc))
            raise PublishUnavailable("Pub/Sub cannot be reached", retry_after=RETRY_AFTER) from None

    def _release(self, batch: Batch[Accepted]) -> None:
        self._change_inflight(-batch.size)

    def _change_inflight(self, delta: int) -> None:
        self._inflight += delta
        if self._on_inflight is not None:
            self._on_inflight(delta)

    async def close(self) -> None:
        """Refuse new requests, send what is batched and wait for every batch (each ends
        within INGEST_PUBLISH_TIMEOUT), then close the channel."""
        self._closed = True
        await self._batcher.drain()
        if self._client is not None:
            await self._client.transport.close()
