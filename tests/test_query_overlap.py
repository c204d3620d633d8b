"""lms.query.overlap: each read is sent before the rows of the one before are worked on,
reads never run two at once, and none is left running when a step's work fails."""

from __future__ import annotations

import asyncio

import pytest

from lms.query.overlap import Step, overlapped


class Server:
    """A connection that answers one read at a time, in order, and notes what happened."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.busy = False
        self.release: dict[str, asyncio.Event] = {}

    async def read(self, name: str) -> str:
        assert not self.busy, "two reads at once on one connection"
        self.busy = True
        self.events.append(f"sent {name}")
        await asyncio.sleep(0)  # a real read always waits for the server at least once
        await self.release.setdefault(name, asyncio.Event()).wait()
        self.events.append(f"done {name}")
        self.busy = False
        return f"rows of {name}"

    def step(self, name: str, work: list[str]) -> Step[str]:
        def use(rows: str) -> None:
            self.events.append(f"use {rows}")
            work.append(rows)

        return Step(lambda: self.read(name), use)


async def test_the_next_read_is_on_the_server_while_the_rows_are_used() -> None:
    server, used = Server(), []
    for name in "abc":
        server.release[name] = asyncio.Event()
        server.release[name].set()
    await overlapped([server.step(name, used) for name in "abc"])
    assert used == ["rows of a", "rows of b", "rows of c"]
    assert server.events == [
        "sent a",
        "done a",
        "sent b",
        "use rows of a",  # while b is on the server
        "done b",
        "sent c",
        "use rows of b",
        "done c",
        "use rows of c",
    ]


async def test_no_steps_and_one_step() -> None:
    await overlapped([])
    server, used = Server(), []
    server.release["only"] = asyncio.Event()
    server.release["only"].set()
    await overlapped([server.step("only", used)])
    assert used == ["rows of only"]


async def test_a_failing_use_waits_for_the_read_in_flight() -> None:
    server = Server()

    def fail(rows: str) -> None:
        raise ValueError(f"bad {rows}")

    async def release_b_later() -> None:
        await asyncio.sleep(0.05)
        server.release["b"].set()

    server.release["a"] = asyncio.Event()
    server.release["a"].set()
    server.release["b"] = asyncio.Event()
    releaser = asyncio.create_task(release_b_later())
    with pytest.raises(ValueError, match="bad rows of a"):
        await overlapped([Step(lambda: server.read("a"), fail), server.step("b", [])])
    assert server.events[-1] == "done b" and not server.busy  # the connection is free again
    await releaser
