"""The size of the query API's answers: aggregates are capped (API_MAX_BUCKETS, a 422 naming
the cap, as Elasticsearch's max_buckets), and answers are encoded off the event loop, so
one large answer does not stall the other requests (/healthz) of the process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from lms.api import render
from lms.api.app import create_app
from lms.domain.severity import SEVERITY_ORDER
from lms.settings import Settings
from lms.store.migrations import Migrator
from tests.helpers import SettingsFactory, db_query, wait_until

pytestmark = pytest.mark.integration

CAP = 20
AGGREGATES = ["/v1/severity", "/v1/services", "/v1/consistency"]


async def _count(settings: Settings, service: str, severity: str, minutes_ago: int) -> None:
    """One committed batch's count, as the write path stores it, `minutes_ago` back."""
    created = datetime.now(UTC).replace(tzinfo=None, second=0) - timedelta(minutes=minutes_ago)
    await db_query(
        settings,
        "INSERT INTO service_severity (service_name, severity, `count`, created_at)"
        " VALUES (%s, %s, 3, %s)",
        [service, severity, created],
    )


@pytest.fixture
async def at_the_cap(settings: SettingsFactory) -> Settings:
    """CAP (service, severity) pairs, each in its own minute: every aggregate answer holds
    exactly CAP counts."""
    capped = settings(api_max_buckets=CAP, api_ingest=False)
    await Migrator(capped).migrate()
    for i in range(CAP):
        await _count(capped, f"svc-{i // 5}", SEVERITY_ORDER[i % 5], minutes_ago=i + 1)
    return capped


@pytest.fixture
async def client(at_the_cap: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(at_the_cap)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        yield c


@pytest.mark.parametrize("path", AGGREGATES)
async def test_one_count_over_the_cap_is_a_422_naming_it(
    client: httpx.AsyncClient, at_the_cap: Settings, path: str
) -> None:
    whole = (await client.get(path)).json()  # at the cap: served whole
    counts = whole.get("buckets") or whole.get("pairs") or whole["services"]
    assert len(counts) == (CAP // 5 if path == "/v1/services" else CAP)
    await _count(at_the_cap, "svc-new", "error", minutes_ago=0)
    response = await client.get(path)
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["type"] == "too_many_buckets"
    assert f"more than {CAP} buckets (API_MAX_BUCKETS)" in problem["msg"]
    if path == "/v1/severity":
        assert problem["loc"] == ["query", "from"]
        narrowed = await client.get(path, params={"service": "svc-0"})  # a narrower query
        assert narrowed.status_code == 200
        assert len(narrowed.json()["buckets"]) == 5


async def test_answers_are_encoded_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an answer is being encoded, /healthz is answered: the encoding below waits for
    that answer, which it could never see if it ran on the event loop (it would block it)."""
    encoding = threading.Event()
    healthz_answered = threading.Event()
    real_encode = render.encode
    seen: list[bool] = []

    def encode_once_healthz_answered(content: object) -> bytes:
        encoding.set()
        seen.append(healthz_answered.wait(timeout=15))
        return real_encode(content)

    monkeypatch.setattr(render, "encode", encode_once_healthz_answered)
    for path in [*AGGREGATES, "/v1/logs"]:
        encoding.clear()
        healthz_answered.clear()
        answer = asyncio.create_task(client.get(path))
        await wait_until(encoding.is_set, timeout=15, interval=0.01, message=f"{path} encodes")
        assert (await client.get("/healthz")).status_code == 200
        healthz_answered.set()
        assert (await answer).status_code == 200, path
    assert seen == [True] * 4
