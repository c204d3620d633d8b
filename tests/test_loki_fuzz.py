"""Fuzz `POST /loki/api/v1/push` through its OpenAPI description (schemathesis): whatever the
body, Content-Type or Content-Encoding, the answer is a documented status, never a 5xx.

The publisher is a stand-in that confirms at once: this test is about decoding and answering;
publishing is proven against the emulator in test_loki_push.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis import checks
from schemathesis.python.asgi import get_client

from lms.api.routers import loki as loki_router
from lms.ingest.http.edge import Accepted
from tests.helpers import ingest_app


class ConfirmingPublisher:
    """Confirms every log at once, as a LogPublisher does once Pub/Sub answered."""

    async def publish(self, logs: Sequence[Accepted]) -> list[str]:
        return [str(item.index) for item in logs]


# Snappy protobuf bodies as the raw bytes schemathesis generates for `format: binary`.
schemathesis.serializer.alias(loki_router.loki.PROTOBUF[0], "application/octet-stream")

# The app connects to the database only on a query, which the Loki route never makes.
# schemathesis calls the made-up host "testserver"; the Host check is tested on its own.
fuzzed_app = ingest_app(ConfirmingPublisher())
schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app).include(
    path=loki_router.PUSH_PATH
)


@pytest.fixture(scope="module")
def asgi_client() -> Iterator[Any]:
    with get_client(fuzzed_app) as test_client:
        yield test_client


@schema.parametrize()
@hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
def test_push_fuzz(case: Any, asgi_client: Any) -> None:
    """Schema-valid JSON may still lack entries the push needs, so the positive-data check is
    left out: a 400 naming what is wrong is the right answer to it."""
    response = case.call(session=asgi_client)
    case.validate_response(response, excluded_checks=[checks.positive_data_acceptance])
    assert response.status_code in (204, 400, 405, 413, 415), response.text
