"""The pipeline's state as `lms api` sees it (GET /v1/pipeline, the web UI's Health page): read
from `lms mon`'s own Prometheus metrics (lms.ops.metrics) at MON_METRICS_URL.

`lms api` and `lms mon` are separate processes, often on separate hosts, and share nothing but
the database; what the store does not know (is `lms mon` alive, how far behind is it, how much
is it holding) only `lms mon` says, on its operations port. Reading it costs one short HTTP GET
with a timeout, and every failure is a state, never an error: unreachable, a timeout or an
answer that is not `lms mon`'s metrics is "down" with the reason, no MON_METRICS_URL is
"unknown". A reachable `lms mon` that holds messages and has not committed for 5 x its
FLUSHINTERVAL is "down" too: the condition of the LmsNoCommit alert (deploy/alerts.yml).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families
from typing_extensions import TypedDict

from lms.domain.timefmt import rfc3339

PipelineStateName = Literal["ok", "unknown", "down"]
STALL_INTERVALS = 5
"""Flush intervals without a commit, while messages are held, that count as stalled."""
MAX_BODY = 4 << 20
"""Bytes of a metrics page read at most; lms mon's is ~20 KB."""
_NEEDED = "lms_last_commit_timestamp_seconds"


class PipelineJson(TypedDict):
    state: PipelineStateName
    source: str | None
    last_commit: str | None
    lag_seconds: float | None
    outstanding: int | None
    detail: str | None


def _unknown(detail: str, source: str | None = None) -> PipelineJson:
    return {
        "state": "unknown",
        "source": source,
        "last_commit": None,
        "lag_seconds": None,
        "outstanding": None,
        "detail": detail,
    }


def _down(source: str, detail: str) -> PipelineJson:
    return {**_unknown(detail, source), "state": "down"}


def _samples(text: str) -> dict[str, float]:
    """Each unlabelled sample by name, and each labelled family summed (a counter's total
    over its labels): all that the state needs."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def state_from_metrics(text: str, source: str, now: float | None = None) -> PipelineJson:
    """The state a metrics page of `lms mon` describes (pure: tests feed it pages)."""
    try:
        values = _samples(text)
    except ValueError as exc:
        return _down(source, f"not Prometheus metrics: {exc}")
    if _NEEDED not in values:
        return _down(source, f"no {_NEEDED} there: is it the metrics of lms mon?")
    now = time.time() if now is None else now
    committed = values.get("lms_batches_flushed_total", 0.0) > 0
    outstanding = values.get("lms_outstanding_messages")
    held = int(outstanding) if outstanding is not None else None
    last = values[_NEEDED]
    answer: PipelineJson = {
        "state": "ok",
        "source": source,
        "last_commit": rfc3339(datetime.fromtimestamp(last, UTC).replace(tzinfo=None))
        if committed
        else None,
        "lag_seconds": values.get("lms_commit_lag_seconds") if committed else None,
        "outstanding": held,
        "detail": None if committed else "no batch committed since lms mon started",
    }
    interval = values.get("lms_flush_interval_seconds")
    idle = now - last  # since the last commit, or start-up
    if held and interval and idle > STALL_INTERVALS * interval:
        answer["state"] = "down"
        answer["detail"] = (
            f"no commit for {idle:.0f} s while {held} messages are outstanding"
            f" (over {STALL_INTERVALS} x FLUSHINTERVAL {interval:g} s)"
        )
    return answer


async def _read(client: httpx.AsyncClient, url: str) -> str:
    async with client.stream("GET", url, headers={"Accept": "text/plain"}) as response:
        if response.status_code != 200:
            raise _Refused(f"HTTP {response.status_code} from the metrics URL")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_BODY:
                raise _Refused(f"the answer is over {MAX_BODY} bytes: not lms mon's metrics")
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


class _Refused(Exception):
    """The metrics URL answered, but not with metrics."""


def _reason(exc: BaseException) -> str:
    """A transport failure in a few words (no stack, no host internals beyond the URL)."""
    if isinstance(exc, httpx.TimeoutException):
        return "no answer within the timeout (MON_METRICS_TIMEOUT)"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}" if str(exc) else "cannot connect"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def pipeline_state(url: str | None, timeout: float) -> PipelineJson:  # noqa: ASYNC109
    """GET /v1/pipeline: `lms mon`'s state from its metrics at `url`, within `timeout`."""
    if url is None:
        return _unknown("MON_METRICS_URL is not set: lms api does not know where lms mon is")
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
        ):
            text = await _read(client, url)
    except _Refused as exc:
        return _down(url, str(exc))
    except TimeoutError:
        return _down(url, "no answer within the timeout (MON_METRICS_TIMEOUT)")
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return _down(url, _reason(exc))
    # A page is ~20 KB: parsing takes a millisecond or two, off the event loop all the same.
    return await asyncio.to_thread(state_from_metrics, text, url)
