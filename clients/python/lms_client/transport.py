"""The interface between the handler and a way of reaching LMS.

A transport makes one attempt per call and says how it went; retrying, backing off, spooling
and counting are the handler's (lms_client.delivery), the same for every transport. An
attempt that may succeed later raises `Retryable` (with the server's `Retry-After`, if it
gave one); logs LMS refused for good come back as `Refused`, the rest of the batch counting as
delivered. Because every log keeps its key across attempts, a retry of a batch that partly
arrived stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lms_client.entry import Entry


class Retryable(Exception):
    """The attempt failed in a way a later one may not: no connection, a timeout, 429, 5xx."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Refused:
    """A log of the batch that LMS will never take: `index` in the batch, a short `reason`
    (LMS's own word, or the HTTP status), `detail` for people."""

    index: int
    reason: str
    detail: str


@runtime_checkable
class Transport(Protocol):
    """What LMSHandler needs: send a batch (called from its one background thread only),
    and release connections at the end."""

    def send(self, batch: Sequence[Entry]) -> list[Refused]:
        """Deliver `batch`; returns the logs refused for good (empty: all delivered).

        Raises Retryable when nothing can be promised about the batch: the whole batch is
        tried again later, with the same keys.
        """
        ...

    def close(self) -> None:
        """Release connections; no `send` follows."""
        ...


def refuse_all(batch: Sequence[Entry], reason: str, detail: str) -> list[Refused]:
    """Every log of `batch` refused for the same reason (a request-level refusal)."""
    return [Refused(index, reason, detail) for index in range(len(batch))]
