"""What happened to the handler's logs, counted; and the problems it reports.

Every log emitted ends in exactly one of: `sent` (LMS took it), `dropped` (it never will,
with the reason in `dropped_by`), or still on its way (queued, in the spool). `spooled`
counts logs written to the spool (they are `sent` once resent), `retried` the logs of every
send attempt after a failed one, spool resends included.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

QUEUE_FULL = "queue_full"
"""emit found the queue full (and, with on_full="block", it stayed full for block_timeout)."""
SPOOL_FULL = "spool_full"
"""The spool directory had no room for a batch that could not be sent."""
REJECTED = "rejected"
"""LMS refused the log for good (a 4xx other than 429, or listed in `rejected`)."""
UNDELIVERABLE = "undeliverable"
"""Retries ran out (or the close's timeout did) and there is no spool to keep the log."""
SPOOL_CORRUPT = "spool_corrupt"
"""A line of a spool file was not a log this client wrote."""
CLOSED = "closed"
"""emit after close()."""
SPOOLING = "spooling"
"""Not a loss: sending failed, so logs go to the spool until it works again."""


@dataclass(frozen=True, slots=True)
class Counters:
    sent: int
    retried: int
    spooled: int
    dropped: int
    dropped_by: Mapping[str, int] = field(default_factory=dict)
    queued: int = 0
    """Logs in the queue right now."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A delivery problem, given to the handler's `on_error` (never raised): `kind` is one of
    the dropped reasons above or SPOOLING, `count` the logs concerned."""

    kind: str
    count: int
    detail: str


class Tally:
    """The counters, updated from emit's threads and the sending thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.retried = 0
        self.spooled = 0
        self._dropped: dict[str, int] = {}

    def add(self, name: str, count: int) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + count)

    def drop(self, reason: str, count: int) -> None:
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + count

    def dropped(self, reason: str) -> int:
        return self._dropped.get(reason, 0)

    def snapshot(self, queued: int) -> Counters:
        with self._lock:
            return Counters(
                self.sent,
                self.retried,
                self.spooled,
                sum(self._dropped.values()),
                dict(self._dropped),
                queued,
            )


def stderr_reporter(service_name: str) -> Callable[[Problem], None]:
    """The default `on_error`: one line on stderr per problem."""

    def report(problem: Problem) -> None:
        print(
            f"lms_client[{service_name}]: {problem.kind}: {problem.count} logs: {problem.detail}",
            file=sys.stderr,
            flush=True,
        )

    return report
