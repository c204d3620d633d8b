"""HTTPTransport: batches as gzip-compressed NDJSON to `lms api`'s `POST /v1/logs`.

Standard library only (urllib), so the core package has no dependencies. The contract it
reads (lms/api/routers/ingest.py): `202 {"accepted", "rejected": [{"index", "reason",
"detail"}]}` once Pub/Sub confirmed the accepted logs; `400` when none is valid (the same shape)
or the body is not JSON; `413` over a size limit (the batch is split in halves and each sent
again); `415` an encoding it does not read; `429`/`503` with `Retry-After`: nothing was
published, retry. Every other 4xx is a refusal a retry cannot fix (a wrong token, say).
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from email.message import Message
from typing import Any

from lms_client import __version__
from lms_client.digits import digits
from lms_client.entry import Entry
from lms_client.transport import Refused, Retryable, refuse_all

INGEST_PATH = "/v1/logs"
_RETRY_STATUSES = frozenset({408, 429})
_TOKEN = re.compile(r"[\x21-\x7e]+")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect of a POST as a GET without the body; say it instead."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class HTTPTransport:
    """POSTs each batch to `{url}/v1/logs` of `lms api`.

    `url` is the base URL of `lms api` (`http://lms.example:3000`); `token` one of its
    `INGEST_TOKENS`, sent as `Authorization: Bearer`; `timeout` the seconds one request may
    take (connect and answer; past it the batch is retried, its keys unchanged).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        compresslevel: int = 6,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must be http:// or https:// with a host, not {url!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if token is not None and not _TOKEN.fullmatch(token):
            raise ValueError("token must be printable ASCII without spaces (a header value)")
        base = url.rstrip("/")
        self.endpoint = base if base.endswith(INGEST_PATH) else base + INGEST_PATH
        self.timeout = timeout
        self._compresslevel = compresslevel
        self._headers = {
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": "gzip",
            "User-Agent": f"lms-client/{__version__}",
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:
        return f"HTTPTransport({self.endpoint!r})"

    def send(self, batch: Sequence[Entry]) -> list[Refused]:
        if not batch:
            return []
        body = gzip.compress(b"\n".join(e.line() for e in batch), self._compresslevel)
        status, headers, text = self._post(body)
        if status == 202:
            return _rejected(_json(text), len(batch))
        if status == 413 and len(batch) > 1:
            # Smaller bodies fit limits a server may set lower than the handler's batches;
            # a half that raises Retryable has the whole batch retried (same keys).
            half = len(batch) // 2
            first = self.send(batch[:half])
            second = self.send(batch[half:])
            return first + [Refused(r.index + half, r.reason, r.detail) for r in second]
        if status in _RETRY_STATUSES or status >= 500:
            raise Retryable(
                f"{self.endpoint} answered {status}: {text[:200]!r}", _retry_after(headers)
            )
        detail = f"{self.endpoint} answered {status}: {text[:300].decode('utf-8', 'replace')}"
        if status == 400:
            listed = _rejected(_json(text), len(batch))
            if listed:
                named = {r.index for r in listed}
                return listed + [
                    Refused(i, "400", detail) for i in range(len(batch)) if i not in named
                ]
        return refuse_all(batch, str(status), detail)

    def _post(self, body: bytes) -> tuple[int, Message[str, str], bytes]:
        request = urllib.request.Request(
            self.endpoint, data=body, headers=self._headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                try:
                    text = error.read()
                except (OSError, http.client.HTTPException):
                    text = b""
                return error.code, error.headers, text
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # URLError (refused, DNS), timeouts and resets are OSErrors; a garbled answer is
            # an HTTPException. Nothing is known of the batch: retry it.
            reason = getattr(exc, "reason", exc)
            raise Retryable(f"no answer from {self.endpoint}: {reason}") from exc

    def close(self) -> None:
        """Nothing to release: each request has its own connection."""


def _json(text: bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _rejected(answer: Any, count: int) -> list[Refused]:
    """The `rejected` items of an ingestion answer whose index is one of the batch."""
    items = answer.get("rejected") if isinstance(answer, dict) else None
    refused: list[Refused] = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and isinstance(item.get("index"), int):
            index = item["index"]
            if 0 <= index < count:
                refused.append(
                    Refused(index, str(item.get("reason", "rejected")), str(item.get("detail", "")))
                )
    return refused


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: delta-seconds or an HTTP-date (RFC 9110);
    None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if digits(value):
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _retry_after(headers: Message[str, str]) -> float | None:
    return retry_after(headers.get("Retry-After"))
