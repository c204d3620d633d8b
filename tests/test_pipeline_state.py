"""GET /v1/pipeline: `lms mon`'s state as `lms api` reads it from a real `lms mon` child's
metrics (before and after its first commit), and every way that can fail, each a state in a
200 answer: no MON_METRICS_URL, a port nobody listens on, a server that never answers, a URL
that is not lms mon's metrics; and a stalled `lms mon` (the LmsNoCommit condition)."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from lms.api.app import create_app
from lms.devtools.ports import free_port
from lms.ops.pipeline_state import state_from_metrics
from lms.settings import Settings
from tests.conftest import query_settings
from tests.helpers import SettingsFactory, ensure_resources, make_log, publish, wait_until
from tests.lms_process import LmsFactory, lms_mon_fixture  # noqa: F401  (the `lms_mon` fixture)

KEYS = {"state", "source", "last_commit", "lag_seconds", "outstanding", "detail"}


async def pipeline(settings: Settings) -> dict[str, Any]:
    """GET /v1/pipeline of an in-process app with `settings`; it must be a 200."""
    app = create_app(settings.model_copy(update={"api_ingest": False}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        response = await c.get("/v1/pipeline")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert set(body) == KEYS
    return body


def api_settings(url: str | None, timeout: float = 2.0) -> Settings:
    return query_settings("lms_unused").model_copy(
        update={"mon_metrics_url": url, "mon_metrics_timeout": timeout}
    )


async def test_unset_url_is_unknown() -> None:
    body = await pipeline(api_settings(None))
    assert body["state"] == "unknown"
    assert body["source"] is None
    assert "MON_METRICS_URL" in body["detail"]
    assert body["last_commit"] is body["lag_seconds"] is body["outstanding"] is None


async def test_a_closed_port_is_down() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    body = await pipeline(api_settings(url))
    assert (body["state"], body["source"]) == ("down", url)
    assert "cannot connect" in body["detail"]
    assert body["last_commit"] is body["outstanding"] is None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


async def test_a_server_that_never_answers_is_down_within_the_timeout(silent_port: int) -> None:
    began = time.monotonic()
    body = await pipeline(api_settings(f"http://127.0.0.1:{silent_port}/metrics", timeout=0.5))
    assert time.monotonic() - began < 5
    assert body["state"] == "down"
    assert "MON_METRICS_TIMEOUT" in body["detail"]


@pytest.fixture
async def mon_metrics(
    settings: SettingsFactory, lms_mon: LmsFactory
) -> AsyncIterator[tuple[Settings, str]]:
    """A real `lms mon` with its metrics on a free port: (its settings, its base URL)."""
    port = free_port()
    s = settings(batchsize=5, flushinterval=0.5)
    await ensure_resources(s)
    mon = lms_mon(s, METRICS_HOST="127.0.0.1", METRICS_PORT=str(port))
    await mon.wait_started()
    yield s, f"http://127.0.0.1:{port}"


@pytest.mark.integration
async def test_a_real_lms_mon_before_and_after_its_first_commit(
    mon_metrics: tuple[Settings, str],
) -> None:
    s, base = mon_metrics
    url = base + "/metrics"
    body = await pipeline(api_settings(url))
    assert (body["state"], body["source"]) == ("ok", url)
    assert body["last_commit"] is body["lag_seconds"] is None
    assert body["detail"] == "no batch committed since lms mon started"
    assert body["outstanding"] == 0

    published = datetime.now(UTC)
    await publish(s, [make_log("svc-health", "info", f"m{i}") for i in range(12)])

    async def committed() -> dict[str, Any] | None:
        body = await pipeline(api_settings(url))
        return body if body["last_commit"] is not None and body["outstanding"] == 0 else None

    body = await wait_until(committed, timeout=60, interval=0.2, message="a commit seen")
    assert isinstance(body, dict)
    assert (body["state"], body["detail"]) == ("ok", None)
    last = datetime.fromisoformat(body["last_commit"])
    assert published.timestamp() - 1 <= last.timestamp() <= time.time() + 1
    assert 0 <= body["lag_seconds"] < 60


@pytest.mark.integration
async def test_a_url_that_is_not_lms_mons_metrics_is_down(
    mon_metrics: tuple[Settings, str],
) -> None:
    _s, base = mon_metrics
    for path, words in (("/", "not Prometheus metrics"), ("/nope", "HTTP 404")):
        body = await pipeline(api_settings(base + path))
        assert body["state"] == "down", (path, body)
        assert words in body["detail"], (path, body)
    # /healthz is JSON, which a lenient parser might take for metrics: no gauge, so down.
    body = await pipeline(api_settings(base + "/healthz"))
    assert body["state"] == "down", body


PAGE = """\
# TYPE lms_last_commit_timestamp_seconds gauge
lms_last_commit_timestamp_seconds {last}
# TYPE lms_commit_lag_seconds gauge
lms_commit_lag_seconds 1.25
# TYPE lms_outstanding_messages gauge
lms_outstanding_messages {held}
# TYPE lms_flush_interval_seconds gauge
lms_flush_interval_seconds 60
# TYPE lms_batches_flushed_total counter
lms_batches_flushed_total{{trigger="size"}} 3
lms_batches_flushed_total{{trigger="interval"}} 1
"""


@pytest.mark.parametrize(
    ("idle", "held", "state"),
    [(299, 40, "ok"), (301, 40, "down"), (10_000, 0, "ok")],
)
def test_stalled_is_messages_held_and_no_commit_for_five_intervals(
    idle: float, held: int, state: str
) -> None:
    now = 1_800_000_000.0
    body = state_from_metrics(PAGE.format(last=now - idle, held=held), "http://m", now=now)
    assert body["state"] == state
    assert body["outstanding"] == held
    assert body["lag_seconds"] == 1.25
    assert body["last_commit"] == datetime.fromtimestamp(now - idle, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    if state == "down":
        assert body["detail"] is not None
        assert f"{held} messages are outstanding" in body["detail"]
    else:
        assert body["detail"] is None
