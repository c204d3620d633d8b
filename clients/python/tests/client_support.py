"""Shared pieces of the client's tests: in-process transports for the handler's own logic
(the transports against real parts are tested with the emulator and `lms api`), a Timer
whose waits take no time, and the handler factory."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from lms_client import LMSHandler, Problem, Refused, Retryable, Timer
from lms_client.entry import Entry


class Collector:
    """Takes every batch, keeping the records' entries in order."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.records: list[logging.LogRecord] = []
        self.closed = False

    def send(self, batch: Sequence[Entry]) -> list[Refused]:
        self.entries.extend(batch)
        return []

    def close(self) -> None:
        self.closed = True


class Gate(Collector):
    """Blocks every send until opened: a transport that is slow to answer."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = threading.Event()
        self.entered = threading.Event()

    def send(self, batch: Sequence[Entry]) -> list[Refused]:
        self.entered.set()
        self.opened.wait(60)
        return super().send(batch)


class Scripted(Collector):
    """Answers each send with the next outcome: an exception to raise, a list of refused
    indexes, or None (all taken)."""

    def __init__(self, outcomes: list[BaseException | list[int] | None]) -> None:
        super().__init__()
        self.outcomes = outcomes
        self.attempts: list[list[str]] = []

    def send(self, batch: Sequence[Entry]) -> list[Refused]:
        self.attempts.append([e.key for e in batch])
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        super().send(batch)
        return [Refused(i, "invalid_field", "scripted") for i in outcome or []]


class InstantTimer(Timer):
    """Waits take no time: the clock jumps instead, and the waits are recorded."""

    def __init__(self) -> None:
        self.clock = 1000.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.clock

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.waits.append(round(seconds, 3))
        self.clock += seconds
        return False


def make_handler(transport: Any, **options: Any) -> LMSHandler:
    """A handler of service `checkout` whose records are also kept on `transport.records`."""
    options.setdefault("service_name", "checkout")
    options.setdefault("flush_interval", 0.01)
    handler = LMSHandler(transport=transport, **options)
    if hasattr(transport, "records"):
        emit = handler.emit

        def keep(record: logging.LogRecord) -> None:
            transport.records.append(record)
            emit(record)

        handler.emit = keep  # type: ignore[method-assign]
    return handler


def entries_fields(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in entries]


def problems() -> tuple[list[Problem], Callable[[Problem], None]]:
    seen: list[Problem] = []
    return seen, seen.append


def retryable(detail: str = "down", retry_after: float | None = None) -> Retryable:
    return Retryable(detail, retry_after)
