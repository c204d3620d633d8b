"""The supervisor of `lms mon`: starts every task and stops them in a safe order.

Shutdown order: stop intake (pullers finish their in-flight pull), flush what is buffered,
commit, ack, then stop lease extension and close connections. Nothing is acked that is not
committed, so a crash at any point only causes redeliveries, which the storage ignores.
"""

from __future__ import annotations

import asyncio
import time

import pymysql
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_when_event_set,
    wait_exponential_jitter,
)

from lms import metrics, pubsub
from lms.acker import Acker
from lms.flow_control import FlowControl
from lms.flusher import Flusher
from lms.health import HealthServer, ReadinessCheck
from lms.leaser import Leaser
from lms.settings import Settings
from lms.storage import Storage
from lms.streaming import StreamingSubscriber
from lms.subscriber import Received, Subscriber

log = structlog.get_logger("lms.monitor")


class Monitor:
    def __init__(self, settings: Settings, create: bool = True) -> None:
        self.settings = settings
        self.create = create
        self.storage = Storage(settings)
        self.subscriber: Subscriber | None = None
        self.flusher: Flusher | None = None
        self.health = HealthServer(
            settings.metrics_host,
            settings.metrics_port,
            ReadinessCheck(lambda: self.ready, self.storage.ping),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set (or DURATION elapses), then shut down cleanly.

        The metrics and health server starts first (so a monitor waiting for its database is
        visible, and not ready) and stops last.
        """
        metrics.FLUSH_INTERVAL.set(self.settings.flushinterval)
        metrics.MAX_OUTSTANDING.set(self.settings.outstanding_limit)
        metrics.LAST_COMMIT.set(time.time())
        await self.health.start()
        try:
            await self._run(stop)
        finally:
            await self.health.stop()

    async def _run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await self._wait_for_database(stop)
        if stop.is_set():
            return
        client = pubsub.subscriber_client(s)
        publisher = pubsub.publisher_client(s)
        try:
            if self.create:
                await pubsub.ensure_subscription(publisher, client, s)
            deadline = await pubsub.subscription_ack_deadline(client, s)
            flow = FlowControl(s.outstanding_limit)
            leaser = Leaser(client, s.subscription_path, deadline)
            # Flow control bounds what the queue can hold; a tighter bound would stall
            # intake while the flusher waits for a commit.
            queue: asyncio.Queue[list[Received] | None] = asyncio.Queue(s.outstanding_limit + 1)
            intake = StreamingSubscriber if s.pull_mode == "streaming" else Subscriber
            self.subscriber = intake(
                client, s.subscription_path, flow, leaser, queue, pullers=s.pullers
            )
            self.flusher = Flusher(
                queue,
                self.storage,
                Acker(client, s.subscription_path, flow, leaser),
                s.batchsize,
                s.flushinterval,
            )
            log.info(
                "monitor started",
                subscription=s.subscription_path,
                batchsize=s.batchsize,
                flushinterval=s.flushinterval,
                max_outstanding=s.outstanding_limit,
                pull_mode=s.pull_mode,
                pullers=s.pullers,
                ack_deadline=deadline,
            )
            async with asyncio.TaskGroup() as group:
                leasing = group.create_task(leaser.run(), name="leaser")
                flushing = group.create_task(self.flusher.run(), name="flusher")
                receiving = group.create_task(self.subscriber.run(), name="subscriber")
                await self._until_stopped(stop, flushing)
                log.info("shutting down: stopping intake")
                self.subscriber.stop()
                await receiving
                log.info("flushing buffered messages")
                await queue.put(None)
                await flushing
                leasing.cancel()
            log.info("monitor stopped", batches=self.flusher.batches)
        finally:
            await self.storage.close()
            await client.transport.close()
            await publisher.transport.close()

    async def _until_stopped(self, stop: asyncio.Event, flushing: asyncio.Task[None]) -> None:
        """Wait for a stop signal or DURATION, or return early if the flusher died."""
        waiter = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {waiter, flushing},
                timeout=self.settings.duration,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
        if flushing.done():
            flushing.result()

    async def _wait_for_database(self, stop: asyncio.Event) -> None:
        """Migrate, waiting for a database that is not up yet instead of crashing."""

        def waiting(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "database not reachable, waiting",
                host=self.settings.mysql_host,
                port=self.settings.mysql_port,
                attempt=state.attempt_number,
                error=str(error),
            )

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(
                    (pymysql.err.OperationalError, OSError, TimeoutError)
                ),
                stop=stop_when_event_set(stop),  # type: ignore[arg-type]
                wait=wait_exponential_jitter(multiplier=1, max=10),
                before_sleep=waiting,
                reraise=True,
            ):
                with attempt:
                    applied = await self.storage.migrate()
                    if applied:
                        log.info("schema migrated", applied=applied)
        except (pymysql.err.OperationalError, OSError, TimeoutError):
            if not stop.is_set():
                raise

    @property
    def ready(self) -> bool:
        return self.subscriber is not None and self.subscriber.running
