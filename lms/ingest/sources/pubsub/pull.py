"""The intake: pullers that turn Pub/Sub messages into `Received` chunks on a bounded queue.

Unary Pull with explicit flow control: capacity is reserved before each pull, so the number of
received-but-unacked messages never exceeds MAX_OUTSTANDING, and what a response brings beyond
MAX_OUTSTANDING_BYTES is handed back at once. In-flight pulls are never cancelled (the
emulator would hand their messages to a dead call); stopping waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog
from google.api_core import exceptions as gexc
from google.pubsub_v1 import PullResponse, ReceivedMessage, SubscriberAsyncClient
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from lms.ingest.received import Received
from lms.ingest.sources.pubsub.client import TRANSIENT_ERRORS
from lms.ingest.sources.pubsub.dispatcher import Dispatcher

log = structlog.get_logger(__name__)

MAX_PER_PULL = 1000


class PullSubscriber:
    """Unary Pull loops: each asks for no more than flow control has room for."""

    retried: tuple[type[BaseException], ...] = TRANSIENT_ERRORS
    """Errors retried with backoff (and logged): the service's or the connection's."""

    def __init__(
        self,
        client: SubscriberAsyncClient,
        subscription: str,
        dispatcher: Dispatcher,
        queue: asyncio.Queue[list[Received] | None],
        pullers: int = 1,
        pull_timeout: float = 3.0,
    ) -> None:
        self._client = client
        self._subscription = subscription
        self._dispatcher = dispatcher
        self._flow = dispatcher.flow
        self._queue = queue
        self._pullers = pullers
        self._pull_timeout = pull_timeout
        self._stopping = asyncio.Event()
        self.running = False

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Pull until stopped; returns once every pulled message is on the queue."""
        self.running = True
        try:
            async with asyncio.TaskGroup() as group:
                for index in range(self._pullers):
                    group.create_task(self._pull_loop(), name=f"puller-{index}")
        finally:
            self.running = False

    def _retrying(self) -> AsyncRetrying:
        """Retry transient Pub/Sub errors forever, with backoff that a stop cuts short."""
        return AsyncRetrying(
            retry=retry_if_exception_type(self.retried),
            wait=wait_exponential_jitter(multiplier=0.5, max=10),
            sleep=self._sleep_unless_stopping,
            before_sleep=self._log_retry,
            reraise=True,
        )

    async def _pull_loop(self) -> None:
        retrying = self._retrying()
        while not self._stopping.is_set():
            want = await self._reserve()
            if not want:
                return
            try:
                response: PullResponse = await retrying(self._pull, want)
            except BaseException:
                await self._flow.release(want)
                raise
            messages = PullResponse.pb(response).received_messages
            await self._admit(messages, reserved=want)

    async def _admit(self, messages: Sequence[ReceivedMessage], reserved: int) -> None:
        """Admit what fits flow control (`reserved` messages of count already taken), queue
        it, and hand the rest straight back to Pub/Sub instead of holding it."""
        sizes = [rm.ByteSize() for rm in messages]
        fits = await self._flow.admit(sizes, reserved)
        if fits < len(messages):
            log.debug(
                "response beyond flow control; handing back",
                count=len(messages) - fits,
                outstanding_bytes=self._flow.outstanding_bytes,
            )
            await self._dispatcher.hand_back([rm.ack_id for rm in messages[fits:]])
        if fits:
            await self._enqueue(messages[:fits], sizes[:fits])

    async def _pull(self, want: int) -> PullResponse:
        if self._stopping.is_set():
            return PullResponse()
        try:
            return await self._client.pull(
                subscription=self._subscription,
                max_messages=want,
                timeout=self._pull_timeout,
                retry=None,
            )
        except gexc.DeadlineExceeded:
            return PullResponse()

    async def _enqueue(self, messages: Sequence[ReceivedMessage], sizes: Sequence[int]) -> None:
        chunk = self._dispatcher.admit(messages, sizes)
        log.debug("pulled", count=len(chunk), outstanding=self._flow.outstanding)
        await self._queue.put(chunk)

    async def _reserve(self) -> int:
        """Capacity for the next pull, or 0 when stopping while waiting for it."""
        reserve = asyncio.ensure_future(self._flow.reserve(MAX_PER_PULL))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({reserve, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if reserve.done():
            granted = reserve.result()
            if self._stopping.is_set():
                await self._flow.release(granted)
                return 0
            return granted
        reserve.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            granted = await reserve
            await self._flow.release(granted)
        return 0

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    @staticmethod
    def _log_retry(state: object) -> None:
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        log.warning(
            "pull failed, retrying",
            attempt=getattr(state, "attempt_number", None),
            error=repr(error),
        )
