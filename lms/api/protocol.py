"""uvicorn's HTTP/1.1 protocol with a deadline on request headers, against slow clients.

uvicorn bounds an idle keep-alive connection (`timeout_keep_alive`) but not one that sends
its headers slowly: every byte received cancels the keep-alive timer, and a new connection
has none, so a client trickling one byte a second (slowloris) holds a connection, and a
place under `limit_concurrency`, forever. Here every request's headers must be complete
within `header_timeout` seconds of the connection opening or of the previous answer;
otherwise the connection is closed. The body is bounded separately, where it is read
(lms.ingest.http.body, INGEST_BODY_TIMEOUT).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class LmsConfig(uvicorn.Config):
    """uvicorn's Config with the header deadline; it travels with the config to each worker
    process of API_WORKERS > 1 (the config is pickled to them)."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "http": HeaderDeadlineProtocol})
        self.header_timeout = header_timeout


class HeaderDeadlineProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request headers are late."""

    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))  # a TCP server's
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the next request's headers have the same bound

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        timeout: float = getattr(self.config, "header_timeout", 10.0)
        self._header_deadline = self.loop.call_later(timeout, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("request headers not complete in time: connection closed")
            self.transport.close()
