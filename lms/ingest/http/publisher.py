"""Publishing accepted logs to Pub/Sub for HTTP ingestion: 2xx only once Pub/Sub confirmed.

The Pub/Sub client library's own batcher collects messages of concurrent requests for a few
milliseconds (INGEST_LINGER) or up to the Publish limit, so many single-log POSTs share one
Publish RPC. Its futures say when each message is confirmed; a request waits for all of its
own, at most INGEST_PUBLISH_TIMEOUT seconds, and is otherwise answered 503 (nothing promised).

Memory is bounded by bytes: a request is admitted only if its bytes fit under
INGEST_MAX_INFLIGHT_BYTES together with everything still unconfirmed, all or nothing, so a
429 never means "some of it was published".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog
from google.api_core import exceptions as gexc
from google.cloud.pubsub_v1 import PublisherClient
from google.cloud.pubsub_v1.types import BatchSettings, PublisherOptions

from lms.ingest.http.edge import Accepted
from lms.ingest.http.errors import Overloaded, PublishUnavailable
from lms.ingest.sources.pubsub.client import emulator_transport
from lms.ingest.sources.pubsub.keys import KEY_ATTRIBUTE
from lms.settings import Settings

log = structlog.get_logger(__name__)

MAX_PUBLISH_BYTES = 9_000_000
"""Bytes of one Publish request: below Pub/Sub's 10 MB limit, with room for attributes."""
MAX_PUBLISH_MESSAGES = 1000
"""Messages of one Publish request: Pub/Sub's limit."""
RETRY_AFTER = 1.0
"""Seconds a 429 or 503 asks the client to wait before it retries."""
PING_TIMEOUT = 5.0
"""Seconds /readyz waits for Pub/Sub at most: a probe must answer before its own timeout."""


class LogPublisher:
    """Publishes to `settings.topic_path`; one per `lms api` process, shared by requests."""

    def __init__(
        self, settings: Settings, on_inflight: Callable[[int], None] | None = None
    ) -> None:
        """`on_inflight` hears every change of the bytes in flight (for a gauge)."""
        self._topic = settings.topic_path
        self._on_inflight = on_inflight
        self._timeout = settings.ingest_publish_timeout
        self._max_inflight = settings.ingest_max_inflight_bytes
        self._inflight = 0
        self._client = PublisherClient(
            **emulator_transport(settings),
            batch_settings=BatchSettings(
                max_bytes=MAX_PUBLISH_BYTES,
                max_latency=settings.ingest_linger,
                max_messages=MAX_PUBLISH_MESSAGES,
            ),
            publisher_options=PublisherOptions(timeout=settings.ingest_publish_timeout),
        )

    @property
    def inflight_bytes(self) -> int:
        """Bytes published and not yet confirmed (or given up on)."""
        return self._inflight

    async def publish(self, logs: Sequence[Accepted]) -> list[str]:
        """Publish `logs` and wait until Pub/Sub confirmed every one; their message ids.

        Raises Overloaded (429) before publishing anything when the bytes do not fit, and
        PublishUnavailable (503) when Pub/Sub does not confirm in time or fails.
        """
        size = sum(len(item.data) for item in logs)
        if self._inflight + size > self._max_inflight and self._inflight > 0:
            raise Overloaded(
                f"{self._inflight} bytes are being published, the bound is"
                f" {self._max_inflight} (INGEST_MAX_INFLIGHT_BYTES); retry later",
                retry_after=RETRY_AFTER,
            )
        loop = asyncio.get_running_loop()
        futures = [self._publish(loop, item) for item in logs]
        try:
            async with asyncio.timeout(self._timeout):
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            raise PublishUnavailable(
                f"Pub/Sub did not confirm within {self._timeout:g} s"
                " (INGEST_PUBLISH_TIMEOUT); nothing of this request is promised, retry it",
                retry_after=RETRY_AFTER,
            ) from None
        except gexc.GoogleAPICallError as exc:
            log.warning("publish failed", error=str(exc), logs=len(logs))
            raise PublishUnavailable(
                f"Pub/Sub refused the publish ({exc.__class__.__name__}); retry it",
                retry_after=RETRY_AFTER,
            ) from exc

    async def ping(self) -> None:
        """Ask Pub/Sub for the topic, once, without retries: raises PublishUnavailable when
        it cannot be reached or the topic is missing, so /readyz takes an ingest node whose
        publishes would fail out of the load balancer before clients see 503s."""
        timeout = min(self._timeout, PING_TIMEOUT)
        try:
            await asyncio.to_thread(
                self._client.get_topic, topic=self._topic, retry=None, timeout=timeout
            )
        except gexc.NotFound:
            raise PublishUnavailable(
                "the Pub/Sub topic does not exist", retry_after=RETRY_AFTER
            ) from None
        except (gexc.GoogleAPIError, TimeoutError) as exc:
            log.warning("pubsub ping failed", error=str(exc))
            raise PublishUnavailable("Pub/Sub cannot be reached", retry_after=RETRY_AFTER) from None

    def _publish(self, loop: asyncio.AbstractEventLoop, item: Accepted) -> asyncio.Future[str]:
        """Hand one message to the client's batcher. Its bytes count as in flight until the
        client is done with it, confirmed or failed, even after the request gave up."""
        attributes = {KEY_ATTRIBUTE: item.key} if item.key is not None else {}
        size = len(item.data)
        self._change_inflight(size)
        future = self._client.publish(self._topic, item.data, **attributes)
        future.add_done_callback(lambda _done: loop.call_soon_threadsafe(self._release, size))
        return asyncio.wrap_future(future, loop=loop)

    def _release(self, size: int) -> None:
        self._change_inflight(-size)

    def _change_inflight(self, delta: int) -> None:
        self._inflight += delta
        if self._on_inflight is not None:
            self._on_inflight(delta)

    def close(self) -> None:
        """Publish what is batched, then release the client's threads and channel."""
        self._client.stop()
