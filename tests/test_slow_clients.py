"""Slow and idle clients cannot hold `lms api`'s connections: a real `lms api` process, raw
sockets for the clients that misbehave, httpx for one that does not.

Each misbehaving client trickles a byte every TRICKLE seconds, so a per-read timeout would
never fire (slowloris): the bounds are on the whole of the headers (API_HEADER_TIMEOUT) and
of an ingestion body (INGEST_BODY_TIMEOUT).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import SettingsFactory, wait_until
from tests.lms_process import lms_api

pytestmark = pytest.mark.integration

TIMEOUT = 3.0
"""The server's timeouts here: long enough that a busy machine (the suite runs on 4 workers
and 2 cores) still parses a request's headers well within it, or the drop is the wrong one."""
TRICKLE = 0.5
BOUND = 20.0
"""Seconds within which a dropped client must see its connection closed."""


async def _trickle(writer: asyncio.StreamWriter, head: bytes, answered: asyncio.Event) -> None:
    """Sends `head`, then one byte every TRICKLE seconds, until the server answers or closes.

    Not once an answer came: a byte sent after the server closed makes its kernel reset the
    connection, and a reset discards the answer the client has not read yet.
    """
    writer.write(head)
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            await asyncio.sleep(TRICKLE)
            if answered.is_set():
                return
            writer.write(b"x")
            await writer.drain()


async def _closed_after(
    reader: asyncio.StreamReader, started: float, answered: asyncio.Event
) -> tuple[bytes, float]:
    """All the server sent until it closed the connection, and when that was; `answered` is
    set at the first byte (or the close)."""
    answer = b""
    try:
        async with asyncio.timeout(BOUND):
            while chunk := await reader.read(65536):
                answer += chunk
                answered.set()
    except ConnectionResetError:
        pass
    answered.set()
    return answer, time.monotonic() - started


def _port(client: httpx.AsyncClient) -> int:
    port = client.base_url.port
    assert port is not None
    return port


async def test_half_sent_requests_are_dropped_while_others_are_served(
    settings: SettingsFactory, tmp_path: Path
) -> None:
    env = {
        "API_QUERY": "false",
        "API_HEADER_TIMEOUT": str(TIMEOUT),
        "INGEST_BODY_TIMEOUT": str(TIMEOUT),
        "API_KEEPALIVE_TIMEOUT": str(TIMEOUT),
    }
    async with lms_api(settings(), tmp_path, **env) as client:
        port = _port(client)
        heads = {
            "headers": b"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
            "body": b"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n[",
            "idle": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        }
        started = time.monotonic()
        links = {name: await asyncio.open_connection("127.0.0.1", port) for name in heads}
        answered = {name: asyncio.Event() for name in heads}
        closes = {  # read all at once: a drop must not wait behind another's
            name: asyncio.create_task(_closed_after(reader, started, answered[name]))
            for name, (reader, _w) in links.items()
        }
        tricklers = [
            asyncio.create_task(_trickle(links[name][1], heads[name], answered[name]))
            for name in ("headers", "body")
        ]
        links["idle"][1].write(heads["idle"])  # a whole request, then nothing more
        # Meanwhile the others are served, on connections of their own.
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
        assert time.monotonic() - started < TIMEOUT, "the test is too slow to tell"
        results = {name: await close for name, close in closes.items()}
        for task in tricklers:
            await task
        for _reader, writer in links.values():
            writer.close()
        async with httpx.AsyncClient(base_url=client.base_url) as fresh:
            assert (await fresh.get("/healthz")).status_code == 200

    answer, elapsed = results["headers"]
    assert answer == b"", answer  # dropped: no request was ever complete
    assert TIMEOUT <= elapsed < BOUND
    answer, elapsed = results["body"]
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"INGEST_BODY_TIMEOUT" in answer
    assert TIMEOUT <= elapsed < BOUND
    answer, elapsed = results["idle"]
    assert answer.startswith(b"HTTP/1.1 200 "), answer  # answered, then closed when idle
    assert TIMEOUT <= elapsed < BOUND


async def test_past_the_concurrency_limit_requests_get_503(
    settings: SettingsFactory, tmp_path: Path
) -> None:
    env = {"API_QUERY": "false", "API_LIMIT_CONCURRENCY": "2", "API_KEEPALIVE_TIMEOUT": "60"}
    async with lms_api(settings(), tmp_path, **env) as client:
        # A keep-alive connection, surely accepted once it has had an answer, holds a place.
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(client))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        try:
            async with httpx.AsyncClient(base_url=client.base_url) as other:
                response = await other.get("/healthz")
            assert response.status_code == 503, response.text
        finally:
            writer.close()

        async def served() -> bool:
            async with httpx.AsyncClient(base_url=client.base_url) as other:
                return (await other.get("/healthz")).status_code == 200

        # The places free up: this one closed, the idle keep-alive connection of `client`
        # closed by the server when its next request's headers are late (10 s by default).
        await wait_until(served, timeout=30, message="served again once a place is free")
