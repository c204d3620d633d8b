"""A tiny asyncio TCP forwarding proxy for fault injection, and the `tcp_proxy` fixture.

Point a client (e.g. `lms mon` with MYSQL_PORT=proxy.port) at the proxy instead of the server,
then break the network on demand, without mocks:

* `await proxy.cut()`: stop listening (new connections are refused) and close every open
  connection; `cut(reset=True)` resets them (RST) instead of closing them cleanly.
* `await proxy.reset_mode()`: keep listening but reset every new connection at once, and the
  open ones too (a server that accepts then dies).
* `await proxy.blackhole()`: accept new connections but never forward a byte, and swallow
  what open connections send, in both directions: the peer just hangs (timeouts, not errors).
* `proxy.latency = 0.2`: every chunk is delivered that many seconds later, in both directions
  (order and throughput are kept: it is a delay line, not a rate limit).
* `await proxy.restore()`: listen and forward normally again. Connections that were
  blackholed lost bytes, so they are reset: clients reconnect on fresh ones.

It serves on 127.0.0.1 only and keeps its port across `cut()`/`restore()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

CHUNK = 65536


class Mode(enum.Enum):
    FORWARD = "forward"
    REFUSE = "refuse"
    RESET = "reset"
    BLACKHOLE = "blackhole"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: SO_LINGER 0, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and, unless blackholed from the start, its upstream connection."""

    def __init__(self, proxy: TcpProxy, client: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.blackholed = False
        self.tasks: set[asyncio.Task[None]] = set()

    def close(self, reset: bool) -> None:
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            if reset:
                _reset(writer)
            else:
                writer.transport.close()
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.latency = 0.0
        self.mode = Mode.FORWARD
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> TcpProxy:
        await self._listen()
        return self

    async def close(self) -> None:
        await self._stop_listening()
        self._close_links(reset=False)

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        return len(self._links)

    # --- faults ------------------------------------------------------------------------------

    async def cut(self, reset: bool = False) -> None:
        """Refuse new connections and close (or reset) the open ones."""
        self.mode = Mode.REFUSE
        await self._stop_listening()
        self._close_links(reset=reset)

    async def reset_mode(self) -> None:
        """Accept, then reset at once; open connections are reset too."""
        self.mode = Mode.RESET
        await self._listen()
        self._close_links(reset=True)

    async def blackhole(self) -> None:
        """Accept but never forward; open connections go silent in both directions."""
        self.mode = Mode.BLACKHOLE
        await self._listen()
        for link in self._links:
            link.blackholed = True

    async def restore(self) -> None:
        """Forward normally again; connections that were blackholed are reset."""
        self.mode = Mode.FORWARD
        for link in [link for link in self._links if link.blackholed]:
            link.close(reset=True)
            self._links.discard(link)
        await self._listen()

    # --- internals ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            # Not wait_closed(): since Python 3.12 it waits for every accepted connection.

    def _close_links(self, reset: bool) -> None:
        links, self._links = self._links, set()
        for link in links:
            link.close(reset)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode is Mode.RESET or self.mode is Mode.REFUSE:
            _reset(writer)
            return
        link = _Link(self, writer)
        self._links.add(link)
        try:
            if self.mode is Mode.BLACKHOLE:
                link.blackholed = True
                await self._swallow(reader)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                _reset(writer)
                return
            link.upstream = up_writer
            if link not in self._links:  # cut while connecting
                link.close(reset=True)
                return
            forward = [
                asyncio.create_task(self._pipe(link, reader, up_writer)),
                asyncio.create_task(self._pipe(link, up_reader, writer)),
            ]
            link.tasks.update(forward)
            await asyncio.gather(*forward, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.close(reset=False)

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(CHUNK):
                pass

    async def _pipe(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy one direction through a delay line, so latency does not limit throughput."""
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._deliver(link, line, writer))
        link.tasks.add(sender)
        try:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = b""
                if not data:
                    break
                line.put_nowait((time.monotonic() + self.latency, data))
            line.put_nowait((0.0, b""))
            await sender
        finally:
            sender.cancel()

    @staticmethod
    async def _deliver(
        link: _Link, line: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                due, data = await line.get()
                if not data:
                    if writer.can_write_eof() and not writer.is_closing():
                        writer.write_eof()
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if link.blackholed:
                    continue
                writer.write(data)
                await writer.drain()
        except OSError:
            link.close(reset=True)


ProxyFactory = Callable[[str, int], Awaitable[TcpProxy]]


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[ProxyFactory]:
    """`await tcp_proxy(host, port) -> TcpProxy`, started on a free port; closed afterwards.

    tests/conftest.py re-exports it, so every test can ask for it by name.
    """
    proxies: list[TcpProxy] = []

    async def make(target_host: str, target_port: int) -> TcpProxy:
        proxy = await TcpProxy(target_host, target_port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()
