"""Every case of the bad-body corpus (tests/bad_bodies.py), in-process against the real
ingestion app (its publisher a stand-in: nothing of these bodies may reach it): a 4xx whose
body names the defect, never a 500, and nothing published. The same corpus against a real
`lms api` child, under a memory watch and with a good client beside it, is fault scenario 10
(tests/test_faults.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from lms.ingest.http.edge import Accepted
from tests.bad_bodies import ENDPOINTS, Case, corpus, good_body
from tests.helpers import ingest_app


class RecordingPublisher:
    """Takes what the app publishes, confirming it at once."""

    def __init__(self) -> None:
        self.published: list[Accepted] = []
        self.inflight_bytes = 0

    async def publish(self, logs: Sequence[Accepted]) -> list[str]:
        self.published.extend(logs)
        return [str(len(self.published) - i) for i in range(len(logs))]

    def close(self) -> None:
        pass


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
async def client(publisher: RecordingPublisher) -> AsyncIterator[httpx.AsyncClient]:
    app = ingest_app(publisher)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize("case", corpus(), ids=lambda case: case.id)
async def test_bad_body_is_refused_with_its_reason(
    case: Case, client: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    response = await client.post(case.endpoint, content=case.body, headers=case.headers)
    assert response.status_code == case.status, response.text[:500]
    assert case.reason in response.text.lower(), response.text[:500]
    assert not publisher.published


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_the_good_body_of_each_endpoint_is_accepted(
    endpoint: str, client: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    """The corpus' defects are applied to these bodies: they must be valid themselves."""
    headers, body = good_body(endpoint)
    response = await client.post(endpoint, content=body, headers=headers)
    assert response.status_code < 300, response.text
    assert len(publisher.published) == 1
