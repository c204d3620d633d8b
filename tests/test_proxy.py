"""The fault-injection TCP proxy of tests/proxy.py, against a local echo server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.proxy import ProxyFactory, TcpProxy


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def _roundtrip(port: int, data: bytes = b"ping", wait: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.readexactly(len(data))
    finally:
        writer.close()


async def _proxy(tcp_proxy: ProxyFactory, port: int) -> TcpProxy:
    return await tcp_proxy("127.0.0.1", port)


async def test_forwards_both_ways(tcp_proxy: ProxyFactory, echo_port: int) -> None:
    proxy = await _proxy(tcp_proxy, echo_port)
    assert await _roundtrip(proxy.port, b"hello") == b"hello"
    big = bytes(range(256)) * 4096  # 1 MiB, several chunks
    assert await _roundtrip(proxy.port, big, wait=10) == big


async def test_cut_refuses_and_closes_then_restore(tcp_proxy: ProxyFactory, echo_port: int):
    proxy = await _proxy(tcp_proxy, echo_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"

    await proxy.cut()
    async with asyncio.timeout(2):
        assert await reader.read(10) == b""  # the open connection is closed
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", proxy.port)

    port = proxy.port
    await proxy.restore()
    assert proxy.port == port
    assert await _roundtrip(proxy.port) == b"ping"


async def test_cut_with_reset(tcp_proxy: ProxyFactory, echo_port: int) -> None:
    proxy = await _proxy(tcp_proxy, echo_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    await proxy.cut(reset=True)
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(2):
            await reader.read(10)
    writer.close()


async def test_reset_mode_accepts_then_resets(tcp_proxy: ProxyFactory, echo_port: int) -> None:
    proxy = await _proxy(tcp_proxy, echo_port)
    await proxy.reset_mode()
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await _roundtrip(proxy.port)
    await proxy.restore()
    assert await _roundtrip(proxy.port) == b"ping"


async def test_blackhole_hangs_until_restore(tcp_proxy: ProxyFactory, echo_port: int) -> None:
    proxy = await _proxy(tcp_proxy, echo_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    await proxy.blackhole()
    writer.write(b"lost")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await reader.read(10)
    with pytest.raises(TimeoutError):
        await _roundtrip(proxy.port, wait=0.5)  # new connections are accepted, then silent

    await proxy.restore()
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        async with asyncio.timeout(2):
            await reader.readexactly(1)  # the blackholed connection is reset
    writer.close()
    assert await _roundtrip(proxy.port) == b"ping"


async def test_latency_delays_each_direction(tcp_proxy: ProxyFactory, echo_port: int) -> None:
    proxy = await _proxy(tcp_proxy, echo_port)
    proxy.latency = 0.2
    started = time.monotonic()
    assert await _roundtrip(proxy.port) == b"ping"
    assert time.monotonic() - started >= 0.4  # 0.2 s there and 0.2 s back
    proxy.latency = 0.0
    started = time.monotonic()
    assert await _roundtrip(proxy.port) == b"ping"
    assert time.monotonic() - started < 0.2
