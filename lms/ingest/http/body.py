"""Reading an ingestion request's body within limits, for every protocol's endpoint.

Two bounds, both enforced while the body arrives rather than after: the bytes on the wire
(INGEST_MAX_BODY_BYTES) and the bytes once decompressed (INGEST_MAX_DECODED_BYTES). The second
is what stops a compression bomb: gzip and deflate are inflated chunk by chunk with zlib's
`max_length`, so a megabyte of gzip that would inflate to a gigabyte costs at most the limit
in memory and the time to produce it, then 413. zstd has no bounded incremental call in its
Python binding, so its (already bounded) compressed bytes are gathered and then read through
a stream reader that stops one byte past the limit: the same bound, reached at the end.

A third bound is time: the whole body must arrive within INGEST_BODY_TIMEOUT, or the request
is answered 408 and its connection closed, so a client that trickles its body (a byte a
second stays under any per-read timeout) cannot hold a connection and its buffers forever.
"""

from __future__ import annotations

import asyncio
import io
import zlib
from dataclasses import dataclass
from typing import Protocol

import zstandard
from starlette.requests import Request

from lms.ingest.http.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from lms.settings import Settings

ENCODINGS = ("identity", "gzip", "deflate", "zstd")
"""The Content-Encoding values every ingestion endpoint reads (also `x-gzip`, gzip's old name)."""


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Bytes a request body may have on the wire (`max_body`) and decompressed (`max_decoded`),
    and the seconds it may take to arrive (`timeout`)."""

    max_body: int
    max_decoded: int
    timeout: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        return cls(
            settings.ingest_max_body_bytes,
            settings.ingest_max_decoded_bytes,
            settings.ingest_body_timeout,
        )


class _Decoder(Protocol):
    def feed(self, chunk: bytes, budget: int) -> bytes:
        """Decoded bytes of `chunk`: at most `budget` + 1, so that over budget is visible."""

    def finish(self, budget: int) -> bytes:
        """What is left once the body ended; BadRequest when the stream is incomplete."""


class _Identity:
    def feed(self, chunk: bytes, budget: int) -> bytes:
        return chunk

    def finish(self, budget: int) -> bytes:
        return b""


class _Zlib:
    """gzip (members one after another, as `cat a.gz b.gz` makes) or deflate, which HTTP says
    is zlib-wrapped but which some clients send raw: the first two bytes tell which."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._pending = b""
        self._inflate: zlib._Decompress | None = None
        self._name = "gzip" if gzip else "deflate"

    def _start(self, data: bytes) -> zlib._Decompress:
        if self._gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, chunk: bytes, budget: int) -> bytes:
        data = self._pending + chunk
        self._pending = b""
        if self._inflate is None:
            if len(data) < 2:
                self._pending = data
                return b""
            self._inflate = self._start(data)
        out: list[bytes] = []
        size = 0
        try:
            while data and size <= budget:
                if self._inflate.eof:
                    if not self._gzip:
                        raise BadRequest("data after the end of the deflate stream")
                    self._inflate = self._start(data)
                piece = self._inflate.decompress(data, budget + 1 - size)
                out.append(piece)
                size += len(piece)
                data = self._inflate.unconsumed_tail or self._inflate.unused_data
        except zlib.error as exc:
            raise BadRequest(f"the body is not valid {self._name}: {exc}") from None
        return b"".join(out)

    def finish(self, budget: int) -> bytes:
        if self._pending or self._inflate is None or not self._inflate.eof:
            raise BadRequest(f"the {self._name} body is truncated")
        return b""


class _Zstd:
    def __init__(self) -> None:
        self._compressed: list[bytes] = []

    def feed(self, chunk: bytes, budget: int) -> bytes:
        self._compressed.append(chunk)
        return b""

    def finish(self, budget: int) -> bytes:
        source = io.BytesIO(b"".join(self._compressed))
        self._compressed.clear()
        reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
        try:
            return reader.read(budget + 1)
        except zstandard.ZstdError as exc:
            raise BadRequest(f"the body is not valid zstd: {exc}") from None


def _decoder(content_encoding: str) -> _Decoder:
    encoding = content_encoding.strip().lower() or "identity"
    if encoding == "identity":
        return _Identity()
    if encoding in ("gzip", "x-gzip"):
        return _Zlib(gzip=True)
    if encoding == "deflate":
        return _Zlib(gzip=False)
    if encoding == "zstd":
        return _Zstd()
    raise UnsupportedMediaType(
        f"Content-Encoding {content_encoding!r} is not read here; use one of {', '.join(ENCODINGS)}"
    )


async def read_body(request: Request, limits: BodyLimits) -> bytes:
    """The request's body, decompressed per its Content-Encoding, within `limits`.

    Raises PayloadTooLarge (413) as soon as either bound is passed, UnsupportedMediaType (415)
    for an encoding not in ENCODINGS, BadRequest (400) for a corrupt or truncated stream,
    RequestTimeout (408) when the body has not arrived within `limits.timeout`.
    """
    decoder = _decoder(request.headers.get("content-encoding", ""))
    declared = request.headers.get("content-length", "")
    # ASCII digits only: str.isdigit() takes "²" (the byte 0xB2 as latin-1), which int() refuses.
    # A length that is no number is left to the count of what arrives.
    if declared.isascii() and declared.isdigit() and int(declared) > limits.max_body:
        raise _too_large_body(limits)
    received = 0
    decoded: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.timeout):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limits.max_body:
                    raise _too_large_body(limits)
                size = _take(decoded, size, decoder.feed(chunk, limits.max_decoded - size), limits)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {limits.timeout:g}s (INGEST_BODY_TIMEOUT);"
            f" {received} bytes came"
        ) from None
    _take(decoded, size, decoder.finish(limits.max_decoded - size), limits)
    return b"".join(decoded)


def _take(parts: list[bytes], size: int, piece: bytes, limits: BodyLimits) -> int:
    """Adds `piece` to the decoded `parts` (`size` bytes so far); the new size, within bounds."""
    size += len(piece)
    if size > limits.max_decoded:
        raise PayloadTooLarge(
            f"the decompressed request body is over {limits.max_decoded} bytes"
            " (INGEST_MAX_DECODED_BYTES); send fewer logs per request"
        )
    parts.append(piece)
    return size


def _too_large_body(limits: BodyLimits) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is over {limits.max_body} bytes (INGEST_MAX_BODY_BYTES);"
        " send fewer logs per request"
    )
