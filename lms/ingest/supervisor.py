"""The supervisor of `lms mon`: starts every task and stops them in a safe order.

Shutdown runs in phases, as uvicorn's does: stop intake (pullers finish their in-flight pull),
flush what is buffered, commit, ack, then stop lease extension and close connections. Nothing
is acked that is not committed, so a crash at any point only causes redeliveries, which the
storage ignores.

The graceful phases have a deadline (SHUTDOWN_TIMEOUT): a flush that cannot commit (the
database is down) must not keep the process alive forever. Past it, the work under way is
abandoned unacked, every held message is handed back for redelivery, and `abandoned` says how
many, so the command can exit with a status that tells.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from lms.ingest.pipeline.flusher import Flusher
from lms.ingest.received import Received
from lms.ingest.sources.pubsub import client as pubsub
from lms.ingest.sources.pubsub.dispatcher import Dispatcher
from lms.ingest.sources.pubsub.flow_control import FlowControl
from lms.ingest.sources.pubsub.leaser import Leaser
from lms.ingest.sources.pubsub.pull import PullSubscriber
from lms.ingest.sources.pubsub.streaming import StreamingSubscriber
from lms.ops import metrics
from lms.ops.health import HealthServer, ReadinessCheck
from lms.settings import Settings
from lms.store.errors import StorageError
from lms.store.migrations import Migrator
from lms.store.writer import BatchWriter

log = structlog.get_logger(__name__)

KEYS_MIGRATION = "005_idempotency_key.sql"
"""The migration from which messages are keyed by `message id@publish time` (or their
producer's key), lms.ingest.sources.pubsub.keys."""
DRAIN_CHECK_SECONDS = 0.25
"""How often `--drain` looks whether the intake has gone idle."""
HAND_BACK_SECONDS = 5.0
"""After the shutdown deadline: how long in-flight pulls may take to return (their timeout is
3 s), and then how long handing back the held messages may take."""


class Supervisor:
    """Runs `lms mon`: the health server, the schema, the intake, the flusher and the leaser."""

    def __init__(
        self, settings: Settings, create: bool = True, drain_idle: float | None = None
    ) -> None:
        self.settings = settings
        self.create = create
        self.drain_idle = drain_idle
        """Stop by itself once nothing arrived for this many seconds and nothing is held
        (arq's burst mode: drain a backlog, then exit); None runs until stopped."""
        self.writer = BatchWriter(settings)
        self.subscriber: PullSubscriber | None = None
        self.flusher: Flusher | None = None
        self.dispatcher: Dispatcher | None = None
        self.keyed_since: int | None = None
        """When migration 005 (idempotency keys) was applied, Unix microseconds: messages
        published earlier keep their bare message id as key."""
        self.abandoned: int | None = None
        """None after a graceful stop; after the shutdown deadline, how many held messages
        were handed back unacked."""
        self.health = HealthServer(
            settings.metrics_host,
            settings.metrics_port,
            ReadinessCheck(lambda: self.ready, self.writer.ping),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set (or DURATION elapses), then shut down.

        The metrics and health server starts first (so a monitor waiting for its database is
        visible, and not ready) and stops last. A task's failure is raised as itself, not
        inside the TaskGroup's ExceptionGroup, so the command can name it in one line.
        """
        metrics.FLUSH_INTERVAL.set(self.settings.flushinterval)
        metrics.MAX_OUTSTANDING.set(self.settings.outstanding_limit)
        metrics.LAST_COMMIT.set(time.time())
        await self.health.start()
        try:
            await self._run(stop)
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
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
            leaser = Leaser(client, s.subscription_path, deadline)
            dispatcher = self.dispatcher = Dispatcher(
                client,
                s.subscription_path,
                FlowControl(s.outstanding_limit, s.max_outstanding_bytes),
                leaser,
                keyed_since_micros=self.keyed_since,
            )
            # Flow control bounds what the queue can hold; a tighter bound would stall
            # intake while the flusher waits for a commit.
            queue: asyncio.Queue[list[Received] | None] = asyncio.Queue(s.outstanding_limit + 1)
            intake = StreamingSubscriber if s.pull_mode == "streaming" else PullSubscriber
            self.subscriber = intake(
                client, s.subscription_path, dispatcher, queue, pullers=s.pullers
            )
            self.flusher = Flusher(
                queue,
                self.writer,
                dispatcher,
                s.batchsize,
                s.flushinterval,
                batch_max_bytes=s.batch_max_bytes,
                rules=s.record_rules,
            )
            log.info(
                "monitor started",
                subscription=s.subscription_path,
                batchsize=s.batchsize,
                flushinterval=s.flushinterval,
                max_outstanding=s.outstanding_limit,
                max_outstanding_bytes=s.max_outstanding_bytes,
                batch_max_bytes=s.batch_max_bytes,
                pull_mode=s.pull_mode,
                pullers=s.pullers,
                ack_deadline=deadline,
                shutdown_timeout=s.shutdown_timeout,
            )
            async with asyncio.TaskGroup() as group:
                leasing = group.create_task(leaser.run(), name="leaser")
                flushing = group.create_task(self.flusher.run(), name="flusher")
                receiving = group.create_task(self.subscriber.run(), name="subscriber")
                await self._until_stopped(stop, flushing, dispatcher)
                await self._shutdown(queue, receiving, flushing, dispatcher)
                leasing.cancel()
            log.info(
                "monitor stopped",
                batches=self.flusher.batches,
                outstanding_peak=dispatcher.flow.peak,
                outstanding_bytes_peak=dispatcher.flow.peak_bytes,
                abandoned=self.abandoned,
            )
        finally:
            await self.writer.close()
            await client.transport.close()
            await publisher.transport.close()

    async def _shutdown(
        self,
        queue: asyncio.Queue[list[Received] | None],
        receiving: asyncio.Task[None],
        flushing: asyncio.Task[None],
        dispatcher: Dispatcher,
    ) -> None:
        """Stop intake, then flush, commit and ack, all within SHUTDOWN_TIMEOUT.

        Past the deadline the flusher is cancelled (its batches stay unacked), but in-flight
        pulls still get their own timeout to return: the emulator would hand their messages
        to a dead call. Then every held message is handed back, so another replica (or the
        next start) gets it at once rather than at the end of its lease.
        """
        assert self.subscriber is not None
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout):
                log.info("shutting down: stopping intake")
                self.subscriber.stop()
                await asyncio.shield(receiving)
                log.info("flushing buffered messages")
                await queue.put(None)
                await flushing
        except TimeoutError:
            flushing.cancel()
            await asyncio.wait({flushing, receiving}, timeout=HAND_BACK_SECONDS)
            receiving.cancel()
            await asyncio.gather(flushing, receiving, return_exceptions=True)
            self.abandoned = dispatcher.held
            log.error(
                "shutdown deadline passed: in-flight work abandoned unacked; Pub/Sub redelivers it",
                shutdown_timeout=self.settings.shutdown_timeout,
                held=self.abandoned,
            )
            try:
                async with asyncio.timeout(HAND_BACK_SECONDS):
                    await dispatcher.nack_held()
            except TimeoutError:
                log.warning("handing back held messages timed out; their leases will expire")

    async def _until_stopped(
        self, stop: asyncio.Event, flushing: asyncio.Task[None], dispatcher: Dispatcher
    ) -> None:
        """Wait for a stop signal, DURATION or (with drain_idle) an empty subscription, or
        return early if the flusher died."""
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
        if self.drain_idle is not None:
            waiters.add(asyncio.ensure_future(self._drained(dispatcher, self.drain_idle)))
        try:
            await asyncio.wait(
                {*waiters, flushing},
                timeout=self.settings.duration,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if flushing.done():
            flushing.result()

    @staticmethod
    async def _drained(dispatcher: Dispatcher, idle: float) -> None:
        while True:
            left = dispatcher.idle_left(idle)
            if left <= 0 and dispatcher.held == 0:
                break
            # Idle time is measured, not signalled: sleep until it could be reached.
            await asyncio.sleep(max(left, DRAIN_CHECK_SECONDS))
        log.info("drained: nothing received and nothing held; stopping", idle_seconds=idle)

    async def _wait_for_database(self, stop: asyncio.Event) -> None:
        """Migrate, waiting for a database that is not up yet instead of crashing; an error a
        retry cannot fix (access denied, say) is raised at once."""

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
                retry=retry_if_exception(_retriable),
                stop=lambda _state: stop.is_set(),
                wait=wait_exponential_jitter(multiplier=1, max=10),
                before_sleep=waiting,
                reraise=True,
            ):
                with attempt:
                    migrator = Migrator(self.settings)
                    applied = await migrator.migrate()
                    if applied:
                        log.info("schema migrated", applied=applied)
                    since = await migrator.applied_at(KEYS_MIGRATION)
                    self.keyed_since = None if since is None else int(since * 1_000_000)
                    await self.writer.open()
        except StorageError as exc:
            if not (exc.retriable and stop.is_set()):
                raise

    @property
    def ready(self) -> bool:
        return self.subscriber is not None and self.subscriber.running


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and exc.retriable


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error in a (nested) group that is not a cancellation."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_error(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group
