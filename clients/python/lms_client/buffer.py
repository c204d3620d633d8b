"""The bounded queue between `emit` (any thread) and the sending thread.

Bounded by logs and by bytes: an Entry counts its encoded JSON, exactly; a Deferred (a log
captured and encoded on the sending thread) its estimate (lms_client.entry.estimate). A
full buffer refuses at once (the default policy, counted by the handler) or after waiting up
to a timeout. The sending thread takes batches: as soon as one is full (by count or bytes),
else once `linger` seconds have passed with logs waiting, else at once when a flush or the
close asked for it.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from lms_client.entry import Queued


class Buffer:
    def __init__(self, max_logs: int, max_bytes: int, batch_logs: int, batch_bytes: int) -> None:
        self.max_logs = max_logs
        self.max_bytes = max_bytes
        self._batch_logs = batch_logs
        self._batch_bytes = batch_bytes
        self._items: deque[Queued] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._hurry = 0
        """Flushes (and the close) waiting: batches go out without lingering."""
        self._unfinished = 0
        """Logs put and not yet `done` (delivered, refused, spooled or dropped): what a flush
        waits for, taken batches included."""
        self._all_done = threading.Condition(self._lock)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, entry: Queued, timeout: float = 0.0) -> bool:
        """Queue `entry`; False when the buffer stayed full for `timeout` seconds (0: at once)."""
        size = entry.size
        with self._lock:
            items = self._items
            if items and (len(items) >= self.max_logs or self._bytes + size > self.max_bytes):
                if timeout <= 0:
                    return False
                deadline = time.monotonic() + timeout
                while not self._fits(entry):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._not_full.wait(remaining)
            items.append(entry)
            self._bytes += size
            self._unfinished += 1
            count = len(items)
            if count == 1 or count >= self._batch_logs or self._bytes >= self._batch_bytes:
                self._not_empty.notify()
            return True

    def _fits(self, entry: Queued) -> bool:
        # An entry larger than the whole byte bound still goes into an empty buffer: every
        # entry is within LMS's limits (a few tens of KiB), and refusing it forever would
        # lose it for a setting. (`put` tests the same inline.)
        if not self._items:
            return True
        return len(self._items) < self.max_logs and self._bytes + entry.size <= self.max_bytes

    def take(self, linger: float, idle: float) -> list[Queued]:
        """The next batch, in order; [] when nothing came within `idle` seconds."""
        with self._lock:
            if not self._items and not self._not_empty.wait_for(lambda: self._items, idle):
                return []
            deadline = time.monotonic() + linger
            while not self._hurry and not self._batch_ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._not_empty.wait(remaining)
            return self._pop_batch()

    def _batch_ready(self) -> bool:
        return len(self._items) >= self._batch_logs or self._bytes >= self._batch_bytes

    def _pop_batch(self) -> list[Queued]:
        batch: list[Queued] = []
        size = 0
        while self._items and len(batch) < self._batch_logs:
            entry = self._items[0]
            if batch and size + entry.size > self._batch_bytes:
                break
            batch.append(self._items.popleft())
            size += entry.size
        self._bytes -= size
        self._not_full.notify_all()
        return batch

    def take_all(self) -> list[Queued]:
        """Everything left (the close, past its deadline, spools or counts it)."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._bytes = 0
            self._not_full.notify_all()
            return items

    def done(self, count: int) -> None:
        """`count` taken logs are dealt with, one way or another."""
        with self._lock:
            self._unfinished -= count
            if self._unfinished <= 0:
                self._all_done.notify_all()

    def wait_done(self, timeout: float) -> bool:
        """Wait until every log put so far is dealt with; False if `timeout` ran out first."""
        with self._lock:
            return self._all_done.wait_for(lambda: self._unfinished <= 0, max(0.0, timeout))

    def hurry(self, on: bool) -> None:
        """Send without lingering while `on` (counted, so overlapping flushes nest)."""
        with self._lock:
            self._hurry += 1 if on else -1
            self._not_empty.notify_all()

    def wake(self) -> None:
        """Make a waiting `take` look again (the close: it returns [] if nothing is left)."""
        with self._lock:
            self._not_empty.notify_all()
