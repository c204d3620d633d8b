"""HTTP clients of `lms api` for the fault scenarios of HTTP ingestion (tests/test_faults.py).

* `RetryingClients`: concurrent clients that POST native logs with ids to /v1/logs, as a
  well-behaved shipper does: a 429 or 503 is retried after its `Retry-After`, a broken
  connection (the server killed, a reset) after a short pause, every request until it gets
  a 2xx. They note which logs were answered 2xx (`acked`), every answer that was neither a
  2xx nor a 429/503 with `Retry-After` (`wrong`), and what they waited.
* `raw_post`: one request over a bare socket, for what an HTTP library will not send: a body
  dribbled a byte at a time (slowloris), 100 MB that the server refuses before reading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.bad_bodies import STAMP

SEVERITIES = ("debug", "info", "warn", "error", "fatal")
PAUSE_AFTER_TRANSPORT_ERROR = 0.2


def keyed_logs(prefix: str, count: int, services: int = 3) -> list[dict[str, str]]:
    """`count` valid native logs with ids `prefix-N`; each payload names its id, so a log
    stored twice under two keys would still show."""
    return [
        {
            "id": f"{prefix}-{n}",
            "service_name": f"http-{n % services:02d}",
            "severity": SEVERITIES[n % len(SEVERITIES)],
            "payload": f"log {prefix}-{n}",
            "timestamp": STAMP,
        }
        for n in range(count)
    ]


@dataclass
class SendStats:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    retry_after_waits: float = 0.0
    wrong: list[tuple[int, str]] = field(default_factory=list)
    """Answers that were not 2xx nor 429/503 with Retry-After: (status, body)."""
    slowest: float = 0.0
    """Seconds of the slowest answered request."""

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "transport_errors": self.transport_errors,
            "retry_after_waited_s": round(self.retry_after_waits, 1),
            "wrong_answers": len(self.wrong),
            "slowest_answer_s": round(self.slowest, 2),
        }


class RetryingClients:
    """`clients` senders sharing `logs`, each POSTing `batch` of them at a time, one request
    after the other with `pause` seconds between, every request retried until a 2xx."""

    def __init__(
        self,
        base_url: str,
        logs: list[dict[str, str]],
        clients: int = 4,
        batch: int = 20,
        pause: float = 0.05,
    ) -> None:
        self.base_url = base_url
        self.batches = [logs[i : i + batch] for i in range(0, len(logs), batch)]
        self.clients = clients
        self.pause = pause
        self.stats = SendStats()
        self.acked: set[str] = set()
        """Ids of the logs answered 2xx."""
        self._next = 0
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def sent(self) -> dict[str, tuple[str, str]]:
        """Every log the clients took to send: id -> (service_name, severity)."""
        taken = (log for batch in self.batches[: self._next] for log in batch)
        return {log["id"]: (log["service_name"], log["severity"]) for log in taken}

    def stop(self) -> None:
        """Take no new batch; `wait` returns once those taken are answered 2xx."""
        self._stopping = True

    def start(self) -> RetryingClients:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._client()) for _ in range(self.clients)]
        return self

    @property
    def done(self) -> bool:
        return all(task.done() for task in self._tasks)

    @property
    def progress(self) -> int:
        """Batches taken so far."""
        return self._next

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109  (a failure, not a cancel)
        async with asyncio.timeout(timeout):
            await asyncio.gather(*self._tasks)

    async def _client(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            while self._next < len(self.batches) and not self._stopping:
                batch = self.batches[self._next]
                self._next += 1
                await self._send(http, batch)
                await asyncio.sleep(self.pause)

    async def _send(self, http: httpx.AsyncClient, batch: list[dict[str, str]]) -> None:
        body = json.dumps(batch).encode()
        while True:
            self.stats.requests += 1
            started = time.monotonic()
            try:
                response = await http.post(
                    "/v1/logs", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.TransportError:
                self.stats.transport_errors += 1
                await asyncio.sleep(PAUSE_AFTER_TRANSPORT_ERROR)
                continue
            self.stats.slowest = max(self.stats.slowest, time.monotonic() - started)
            self.stats.statuses[response.status_code] += 1
            if response.is_success:
                if response.json().get("accepted") != len(batch):
                    self.stats.wrong.append((response.status_code, response.text[:300]))
                self.acked.update(log["id"] for log in batch)
                return
            retry_after = response.headers.get("retry-after", "")
            if response.status_code not in (429, 503) or not retry_after.isdigit():
                self.stats.wrong.append((response.status_code, response.text[:300]))
                return
            self.stats.retry_after_waits += int(retry_after)
            await asyncio.sleep(int(retry_after))


@dataclass
class RawAnswer:
    status: int | None
    """None: the server closed (or reset) the connection without an answer we could read."""
    headers: dict[str, str]
    body: bytes
    sent: int
    """Body bytes written before the answer came (or the server closed)."""

    @property
    def text(self) -> str:
        """The body, lowercase, for matching a reason."""
        return self.body.decode("utf-8", "replace").lower()


async def raw_post(
    port: int,
    path: str,
    headers: dict[str, str],
    chunks: Iterable[bytes] | AsyncIterator[bytes],
    content_length: int | None = None,
    expect_continue: bool = False,
) -> RawAnswer:
    """POST over a bare socket, with `Content-Length` when given, else chunked.

    The body is written while the answer is read, so a server that answers before the body
    ends (413) is seen, unless the server closed the connection with some of the body still
    unread: the client's kernel may then drop the answer for the reset that follows
    (`status` None). With `expect_continue` the body waits for the server's `100 Continue`,
    as curl does for large bodies, and an answer before it is final.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    chunked = content_length is None
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {content_length}")
    if expect_continue:
        lines.append("Expect: 100-continue")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    sent = 0

    async def send() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            async for chunk in _each(chunks):
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                await writer.drain()
                sent += len(chunk)
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()

    sender: asyncio.Task[None] | None = None
    try:
        if expect_continue:
            first = await _read_answer(reader)
            if first is None:
                return RawAnswer(None, {}, b"", 0)
            if first[0] != 100:
                return RawAnswer(*first, sent=0)
        sender = asyncio.create_task(send())
        answer = await _read_answer(reader)
        if answer is None:
            return RawAnswer(None, {}, b"", sent)
        return RawAnswer(*answer, sent=sent)
    finally:
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
        writer.transport.abort()


async def _each(chunks: Iterable[bytes] | AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterator):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes] | None:
    """(status, headers, body) of the next answer; None when the connection ended first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer_headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines if line)
    }
    length = int(answer_headers.get("content-length", "0"))
    try:
        body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        body = b""
    return int(status_line.split()[1]), answer_headers, body
