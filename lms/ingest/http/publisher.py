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
import threading
from collections.abc import Callable, Sequence

import structlog
from google.api_core import exceptions as gexc
from google.cloud.pubsub_v1 import PublisherClient
from google.cloud.pubsub_v1.publisher.futures import Future as PublishFuture
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


class LogPublisher:
    """Publishes to `settings.topic_path`; one per `lms api` process, shared by requests."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.topic_path
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
        confirmations = self._submit(asyncio.get_running_loop(), logs)
        try:
            async with asyncio.timeout(self._timeout):
                return await confirmations
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

    def _submit(
        self, loop: asyncio.AbstractEventLoop, logs: Sequence[Accepted]
    ) -> asyncio.Future[list[str]]:
        """Hand the messages to the client's batcher. Their bytes count as in flight until
        the client is done with every one of them, confirmed or failed, even after the
        request gave up."""
        futures: list[PublishFuture] = []
        sent = 0
        try:
            for item in logs:
                attributes = {KEY_ATTRIBUTE: item.key} if item.key is not None else {}
                futures.append(self._client.publish(self._topic, item.data, **attributes))
                sent += len(item.data)
        except BaseException:
            self._track(loop, futures, sent).cancel()  # what was handed over is still released
            raise
        return self._track(loop, futures, sent)

    def _track(
        self, loop: asyncio.AbstractEventLoop, futures: list[PublishFuture], size: int
    ) -> asyncio.Future[list[str]]:
        self._inflight += size
        return _Confirmations(loop, futures, lambda: self._release(size)).result

    def _release(self, size: int) -> None:
        self._inflight -= size

    def close(self) -> None:
        """Publish what is batched, then release the client's threads and channel."""
        self._client.stop()


class _Confirmations:
    """The Pub/Sub futures of one request, seen from the event loop: it is woken once when
    the last one is done, and once sooner if one fails, instead of twice per message as an
    `asyncio.wrap_future` and a release callback per message cost (a fifth of the event
    loop's time for bodies of 1,000 logs, bench/ingest.py under py-spy)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        futures: list[PublishFuture],
        release: Callable[[], None],
    ) -> None:
        self.result: asyncio.Future[list[str]] = loop.create_future()
        self._loop = loop
        self._futures = futures
        self._release = release
        self._left = len(futures)
        self._failed = False
        self._lock = threading.Lock()
        if not futures:
            self._settle(last=True)
        for future in futures:
            future.add_done_callback(self._one_done)

    def _one_done(self, future: PublishFuture) -> None:
        """Runs in the client's commit thread (or this one, for a future already done)."""
        failed = future.exception() is not None
        with self._lock:
            self._left -= 1
            last = self._left == 0
            first_failure = failed and not self._failed
            self._failed = self._failed or failed
        if last or first_failure:
            self._loop.call_soon_threadsafe(self._settle, last)

    def _settle(self, last: bool) -> None:
        """On the loop: release the bytes once all are done; answer the request once all are
        confirmed or one failed (unless it gave up already)."""
        if last:
            self._release()
        if self.result.done():
            return
        for future in self._futures:
            error = future.exception() if future.done() else None
            if error is not None:
                self.result.set_exception(error)
                return
        if last:
            self.result.set_result([future.result() for future in self._futures])
