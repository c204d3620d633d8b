"""Reads of one snapshot whose rows are worked on while the server runs the next read.

The SELECTs of a snapshot (lms.query.reader's `snapshot`) run one after another on one
connection, and the Python work on each one's rows (decoding folded text, summing, parsing
metadata) used to leave the server idle, as the server's work left Python idle. MySQL is
another process, on another core: so each read is sent before the rows of the one before are
worked on, and the two run at once. Each read still runs alone on the connection, in order,
so the snapshot and the answers are unchanged; only the waiting overlaps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Step(Generic[T]):
    """One read and what to do with its rows. `read` must not depend on what an earlier
    step's `use` makes (it is sent before that runs): a read that needs it goes in a later
    call of `overlapped`."""

    read: Callable[[], Awaitable[T]]
    use: Callable[[T], None]


async def overlapped(steps: Sequence[Step[Any]]) -> None:
    """Every step's read, in order, and its `use`, run while the next read is on the server."""
    held: tuple[Any, Callable[[Any], None]] | None = None
    for step in steps:
        pending = asyncio.ensure_future(step.read())
        await asyncio.sleep(0)  # the task runs up to its first wait: the read is sent
        try:
            if held is not None:
                held[1](held[0])
        finally:
            # Never left running when a `use` raises: the connection is back in the pool
            # only once its read is done.
            rows = await pending
        held = (rows, step.use)
    if held is not None:
        held[1](held[0])
