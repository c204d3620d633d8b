"""The sending thread: batches from the buffer to the transport, retried, else spooled.

Per batch: send; on a Retryable failure wait (the server's Retry-After, else exponential
backoff with jitter) and send again, with the same keys, for up to `retry_for` seconds. Then,
with a spool, the batch goes to the spool and so does every later batch until the spool is
resent (oldest first, one file per turn, so the queue keeps draining meanwhile); without one
its logs are dropped and counted. Failures are reported through `report` and never raised.

Logs queued as a Deferred (captured, not encoded) are encoded here, as their batch is taken,
by the handler's `encode`; one that fails to encode (a bug) is counted as rejected.

At close the buffer is drained (no lingering) until the close's deadline; what is still
unsent then goes to the spool, or is counted as dropped.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lms_client import counters
from lms_client.buffer import Buffer
from lms_client.counters import Problem, Tally
from lms_client.entry import Deferred, Entry, Queued
from lms_client.spool import Spool, read
from lms_client.transport import Refused, Retryable, Transport

MAX_RETRY_AFTER = 300.0
"""A Retry-After beyond this is taken as this (a misconfigured server must not stall us)."""
_NEVER = threading.Event()
"""Never set: a wait on it is a plain sleep of the Timer."""
REPORT_EVERY = 10.0
"""Seconds between two reports of queue-full drops (they happen in emit, at any rate)."""


class Timer:
    """Time for the sending thread; tests pass one whose waits return at once."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Sleep `seconds` unless `event` is set first; True if it was."""
        return event.wait(seconds)


def backoff(
    attempt: int,
    retry_after: float | None,
    base: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before attempt `attempt + 1`: what the server asked for (Retry-After) when it
    said, else `base` doubling per attempt up to `cap`, the upper half of it random so that
    many clients coming back do not all retry at once."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
    delay = min(cap, base * 2.0 ** min(attempt - 1, 60))
    return delay / 2 + rand() * delay / 2


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_for: float = 10.0
    """Seconds a batch is retried before it is spooled (or dropped, without a spool)."""
    base: float = 0.2
    cap: float = 10.0


class Delivery:
    def __init__(
        self,
        transport: Transport,
        buffer: Buffer,
        spool: Spool | None,
        tally: Tally,
        report: Callable[[Problem], None],
        flush_interval: float,
        policy: RetryPolicy,
        timer: Timer | None = None,
        encode: Callable[[Deferred], Entry] | None = None,
    ) -> None:
        self.transport = transport
        self._encode = encode
        self._buffer = buffer
        self._spool = spool
        self._tally = tally
        self._report_to = report
        self._interval = flush_interval
        self._policy = policy
        self._timer = timer or Timer()
        self._closing = threading.Event()
        self._deadline = math.inf
        self.in_flight: list[Entry] = []
        self._pending = False
        """The spool holds files to resend: new batches queue behind them, in the spool."""
        self._next_resend = 0.0
        self._resend_failures = 0
        self._queue_full_reported = 0
        self._queue_full_at = -math.inf

    def close(self, deadline: float) -> None:
        """Stop once drained, or at `deadline` (Timer.now() time) at the latest."""
        self._deadline = deadline
        self._closing.set()
        self._buffer.hurry(True)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # a bug here must not vanish with the thread
            lost = self.in_flight + self._entries(self._buffer.take_all())
            self._keep(lost, f"the sending thread failed: {exc!r}")
            raise

    def _run(self) -> None:
        if self._spool is not None:
            self._pending = bool(self._spool.files())
        while True:
            closing = self._closing.is_set()
            now = self._timer.now()
            resend_due = self._pending and now >= self._next_resend
            if closing or resend_due:
                # No lingering; while closing with a resend to wait for, wait for it (or logs).
                early = resend_due or not self._pending
                until = min(self._next_resend, self._deadline) - now
                batch = self._buffer.take(0.0, 0.0 if early else min(max(until, 0.0), 1.0))
            else:
                wait = self._next_resend - now if self._pending else 1.0
                batch = self._buffer.take(self._interval, min(max(wait, 0.0), 1.0))
            if batch:
                try:
                    self.in_flight = self._entries(batch)
                    if self.in_flight:
                        self._deliver(self.in_flight)
                finally:
                    self.in_flight = []
                    self._buffer.done(len(batch))
            if self._pending and self._timer.now() >= self._next_resend and not self._late():
                self._resend_one()
            self._report_queue_full()
            drained = closing and not batch and not len(self._buffer)
            if drained and (
                not self._pending or self._late() or self._next_resend > self._deadline
            ):
                return

    def _entries(self, items: list[Queued]) -> list[Entry]:
        """`items` encoded, in order; one whose encoding fails is counted as rejected."""
        entries: list[Entry] = []
        failed = 0
        error: Exception | None = None
        for item in items:
            if isinstance(item, Entry):
                entries.append(item)
                continue
            try:
                assert self._encode is not None, "a Deferred queued without an encoder"
                entries.append(self._encode(item))
            except Exception as exc:
                failed += 1
                error = exc
        if failed:
            self._drop(counters.REJECTED, failed, f"cannot encode a log: {error!r}")
        return entries

    def _late(self) -> bool:
        return self._timer.now() >= self._deadline

    def _deliver(self, batch: list[Entry]) -> None:
        if self._spool is not None and (self._pending or self._late()):
            self._to_spool(batch, None)
            return
        error = self._send_retrying(batch)
        if error is not None:
            self._keep(batch, error)

    def _keep(self, batch: list[Entry], error: str) -> None:
        """Logs that could not be sent: into the spool, else dropped."""
        if not batch:
            return
        if self._spool is not None:
            self._to_spool(batch, error)
        else:
            self._drop(counters.UNDELIVERABLE, len(batch), error)

    def _send_retrying(self, batch: list[Entry]) -> str | None:
        """Send until done (None) or out of time (the last error)."""
        started = self._timer.now()
        attempt = 0
        while True:
            try:
                refused = self.transport.send(batch)
            except Retryable as exc:
                error, retry_after = str(exc), exc.retry_after
            except Exception as exc:  # a transport's bug: retried, like any failure
                error, retry_after = f"{type(exc).__name__}: {exc}", None
            else:
                self._delivered(batch, refused)
                return None
            attempt += 1
            delay = backoff(attempt, retry_after, self._policy.base, self._policy.cap)
            wake_at = self._timer.now() + delay
            if wake_at > self._give_up_at(started):
                return error
            if self._timer.wait(self._closing, delay):
                # Closing (now, or already): the close's deadline bounds the wait too.
                if wake_at > self._give_up_at(started):
                    return error
                self._timer.wait(_NEVER, max(0.0, wake_at - self._timer.now()))
            self._tally.add("retried", len(batch))

    def _give_up_at(self, started: float) -> float:
        return min(started + self._policy.retry_for, self._deadline)

    def _delivered(self, batch: Sequence[Entry], refused: list[Refused]) -> None:
        self._tally.add("sent", len(batch) - len(refused))
        if refused:
            first = refused[0]
            self._drop(
                counters.REJECTED,
                len(refused),
                f"LMS refused them, e.g. log {first.index} of a batch of {len(batch)}:"
                f" {first.reason}: {first.detail}",
            )

    def _to_spool(self, batch: list[Entry], error: str | None) -> None:
        assert self._spool is not None
        try:
            written = self._spool.write(batch)
        except OSError as exc:
            self._drop(counters.SPOOL_FULL, len(batch), f"cannot write the spool: {exc}")
            return
        if not written:
            self._drop(
                counters.SPOOL_FULL,
                len(batch),
                f"the spool {self._spool.directory} is full ({self._spool.max_bytes} bytes)",
            )
            return
        self._tally.add("spooled", len(batch))
        if not self._pending:
            self._pending = True
            self._next_resend = self._timer.now() + backoff(
                1, None, self._policy.base, self._policy.cap
            )
        if error is not None:
            self._report(Problem(counters.SPOOLING, len(batch), error))

    def _resend_one(self) -> None:
        """Send the oldest spool file; on failure, try again after a backoff."""
        assert self._spool is not None
        with self._spool.resending() as mine:
            if not mine:  # another process resends this directory
                self._next_resend = self._timer.now() + self._policy.cap
                return
            files = self._spool.files()
            if not files:
                self._pending = False
                return
            path = files[0]
            try:
                entries, bad = read(path)
            except FileNotFoundError:
                return
            except OSError as exc:
                self._drop(counters.SPOOL_CORRUPT, 0, f"cannot read {path}: {exc}")
                self._next_resend = self._timer.now() + self._policy.cap
                return
            if bad:
                self._drop(counters.SPOOL_CORRUPT, bad, f"lines of {path} that are not logs")
            if entries:
                self._tally.add("retried", len(entries))
                try:
                    refused = self.transport.send(entries)
                except Exception as exc:
                    retry_after = exc.retry_after if isinstance(exc, Retryable) else None
                    self._resend_failures += 1
                    self._next_resend = self._timer.now() + backoff(
                        self._resend_failures, retry_after, self._policy.base, self._policy.cap
                    )
                    return
                self._delivered(entries, refused)
            self._resend_failures = 0
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._pending = len(files) > 1 or bool(self._spool.files())

    def _drop(self, reason: str, count: int, detail: str) -> None:
        self._tally.drop(reason, count)
        self._report(Problem(reason, count, detail))

    def _report_queue_full(self) -> None:
        dropped = self._tally.dropped(counters.QUEUE_FULL)
        now = self._timer.now()
        if dropped > self._queue_full_reported and now - self._queue_full_at >= REPORT_EVERY:
            self._report(
                Problem(
                    counters.QUEUE_FULL,
                    dropped - self._queue_full_reported,
                    f"the queue was full ({self._buffer.max_logs} logs or"
                    f" {self._buffer.max_bytes} bytes)",
                )
            )
            self._queue_full_reported = dropped
            self._queue_full_at = now

    def _report(self, problem: Problem) -> None:
        with contextlib.suppress(Exception):  # a callback's failure is not the application's
            self._report_to(problem)

    def keep_unsent(self, batch: list[Queued]) -> None:
        """Logs left once the thread stopped: into the spool, else dropped."""
        self._keep(self._entries(batch), "queued after the handler stopped sending")

    def abandon(self) -> None:
        """The close's deadline passed with the thread still busy (a send hanging): keep
        what it holds and what is queued. A batch in flight may arrive as well; its keys make
        LMS store it once."""
        self._keep(
            self._entries(self._buffer.take_all()) + list(self.in_flight), "close() timed out"
        )
