"""`lms pub --http` and `lms sim --http`: test traffic through `lms api`'s `POST /v1/logs`.

Each log carries its own `id`, so a request retried after a timeout, a 429 or a 503 stores
nothing twice; a chunk counts only once `lms api` answered 202 with every log of it accepted,
which (ingestion's contract) means Pub/Sub confirmed them all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from lms.devtools.sender import Message, Sender
from lms.settings import Settings

INGEST_PATH = "/v1/logs"
RETRY_FOR = 120.0
"""Seconds a request is retried for before the run fails (a shipper would keep trying)."""
_backoff = wait_exponential_jitter(multiplier=0.1, max=5.0)


class Retryable(Exception):
    """An answer that says "try again": 429 or 5xx, or no answer at all."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """`lms api` refused what the generator made (a 4xx, or logs in `rejected`): a bug on
    one side or the other, never worth retrying."""


@dataclass(frozen=True)
class HttpTarget:
    """Where `--http` sends: the base URL of `lms api` and an ingestion token, if any."""

    url: str
    token: str | None = None

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> HttpTarget:
        """The first of INGEST_TOKENS is the client's token, so one environment configures
        both the `lms api` under test and the traffic sent to it."""
        tokens = settings.ingest_token_list
        return cls(url.rstrip("/"), tokens[0] if tokens else None)


def with_id(data: bytes) -> bytes:
    """The log `data` with a fresh idempotency key (random, so two runs never collide)."""
    return json.dumps({"id": uuid.uuid4().hex, **json.loads(data)}).encode()


class HttpSender(Sender):
    """POSTs each chunk as one NDJSON body, retrying it (same ids) until it is accepted."""

    def __init__(
        self, session: aiohttp.ClientSession, target: HttpTarget, settings: Settings
    ) -> None:
        super().__init__(settings)
        self._session = session
        self._url = target.url + INGEST_PATH
        self._headers = {"Content-Type": "application/x-ndjson"}
        if target.token:
            self._headers["Authorization"] = f"Bearer {target.token}"

    async def _request(self, chunk: list[Message]) -> None:
        body = b"\n".join(with_id(data) for data, _ in chunk)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Retryable),
            wait=_wait,
            stop=stop_after_delay(RETRY_FOR),
            reraise=True,
        ):
            with attempt:
                await self._post(body, len(chunk))

    async def _post(self, body: bytes, count: int) -> None:
        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as reply:
                text = await reply.text()
                if reply.status == 429 or reply.status >= 500:
                    raise Retryable(f"{reply.status}: {text[:200]}", _retry_after(reply))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Retryable(f"no answer: {exc!r}") from exc
        if reply.status != 202:
            raise Refused(f"POST {self._url} answered {reply.status}: {text[:500]}")
        answer = json.loads(text)
        if answer.get("accepted") != count or answer.get("rejected"):
            raise Refused(f"POST {self._url} did not accept all {count} logs: {text[:500]}")


def _retry_after(reply: aiohttp.ClientResponse) -> float | None:
    try:
        return float(reply.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _wait(state: RetryCallState) -> float:
    """Retry-After when the server said how long, else exponential backoff with jitter."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, Retryable) and error.retry_after is not None:
        return error.retry_after
    return _backoff(state)


@asynccontextmanager
async def http_session(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    """One pooled keep-alive session, a connection per request in flight."""
    timeout = aiohttp.ClientTimeout(total=settings.ingest_publish_timeout + 30)
    connector = aiohttp.TCPConnector(limit=settings.publish_concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        yield session
