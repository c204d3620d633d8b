"""`POST /loki/api/v1/push` end to end: a real Loki client library (loki-logger-handler, JSON
gzip'ed) and snappy protobuf bodies through httpx push to `lms api` served by uvicorn; `lms
mon` (in-process, draining) stores them in MariaDB with the mapped fields.

A second subscription on the topic sees every published message, so the tests also read the
idempotency key each log was published with (a retried push must give the same keys).
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from loki_logger_handler.loki_logger_handler import LokiLoggerHandler

from lms.api.app import create_app
from lms.api.routers import loki as loki_router
from lms.devtools.ports import free_port
from lms.ingest.http.publisher import KEY_ATTRIBUTE, LogPublisher
from lms.ingest.supervisor import Supervisor
from lms.settings import Settings
from tests.helpers import db_query, ensure_resources, wait_until
from tests.test_ingest_publisher import pull_all
from tests.test_loki_decode import NS, proto_body

pytestmark = pytest.mark.integration

COLUMNS = "service_name, payload, severity, `timestamp`, trace_id, span_id, metadata"


@dataclass
class Served:
    settings: Settings
    url: str
    observer: Settings
    """The same topic, another subscription: what was published, with its attributes."""

    async def published_keys(self, expected: int) -> list[str]:
        messages = await pull_all(self.observer, expected)
        assert len(messages) == expected
        return [rm.message.attributes[KEY_ATTRIBUTE] for rm in messages]

    async def store(self) -> None:
        """Run `lms mon` until the subscription is drained."""
        async with asyncio.timeout(60):
            await Supervisor(self.settings, drain_idle=1.0).run(asyncio.Event())

    async def rows(self, where: str = "1") -> list[tuple[Any, ...]]:
        sql = f"SELECT {COLUMNS} FROM service_logs WHERE {where} ORDER BY payload"
        return await db_query(self.settings, sql)


@asynccontextmanager
async def serving(settings) -> AsyncIterator[Served]:
    """`lms api` with the Loki router and a LogPublisher, on a free port."""
    s = settings(flushinterval=0.2)
    observer = settings(pubsub_subscription=f"{s.pubsub_subscription}-observer")
    await ensure_resources(s)
    await ensure_resources(observer)
    app = create_app(s, publisher=LogPublisher(s))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, timeout=10, interval=0.05)
        yield Served(s, f"http://127.0.0.1:{port}{loki_router.PUSH_PATH}", observer)
    finally:
        server.should_exit = True
        await task
        await app.state.publisher.close()


async def test_a_loki_client_library_pushes_logs_that_arrive_mapped(settings) -> None:
    async with serving(settings) as served:
        handler = LokiLoggerHandler(
            url=served.url,
            labels={"app": "checkout", "env": "test"},
            label_keys=["level"],
            timeout=0.2,
            compressed=True,
            enable_structured_loki_metadata=True,
        )
        logger = logging.getLogger("tests.loki.client")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        try:
            logger.warning("disk almost full")
            logger.error("payment failed", extra={"loki_metadata": {"trace_id": "trace-7"}})
            logger.debug("cache miss")
            keys = await served.published_keys(3)
        finally:
            logger.removeHandler(handler)
        assert handler.error is False
        assert len(set(keys)) == 3
        await served.store()
        rows = await served.rows()

    assert [(r[0], json.loads(r[1])["message"], r[2]) for r in rows] == [
        ("checkout", "cache miss", "debug"),
        ("checkout", "disk almost full", "warn"),
        ("checkout", "payment failed", "error"),
    ]
    assert all(
        abs((r[3] - datetime.now(UTC).replace(tzinfo=None)).total_seconds()) < 120 for r in rows
    )
    assert [r[4] for r in rows] == [None, None, "trace-7"]
    assert json.loads(rows[0][6]) == {"labels": {"env": "test"}}


async def test_snappy_protobuf_pushes_arrive_and_a_retry_has_the_same_keys(settings) -> None:
    body = proto_body(
        ('{service_name="billing", level="error", region="eu"}', [(NS, "invoice failed", {})]),
        ('{job="cron"}', [(NS, "tick", {"detected_level": "debug", "span_id": "s1"})]),
    )
    headers = {"Content-Type": "application/x-protobuf"}
    async with serving(settings) as served, httpx.AsyncClient(timeout=30) as client:
        first = await client.post(served.url, content=body, headers=headers)
        retry = await client.post(served.url, content=body, headers=headers)
        assert (first.status_code, first.text) == (204, "")
        assert retry.status_code == 204
        keys = await served.published_keys(4)
        await served.store()
        rows = await served.rows()

    assert sorted(keys[:2]) == sorted(keys[2:]) and len(set(keys)) == 2
    billing = ("billing", "invoice failed", "error", datetime(2025, 12, 1, 8, 50, 0, 123456))
    assert (*billing, None, None) in [r[:6] for r in rows]
    assert ("cron", "tick", "debug", billing[3], None, "s1") in [r[:6] for r in rows]
    assert json.loads(next(r[6] for r in rows if r[0] == "billing")) == {"labels": {"region": "eu"}}


async def test_refused_entries_are_reported_and_the_valid_ones_still_arrive(settings) -> None:
    body = {
        "streams": [
            {"stream": {"app": "web"}, "values": [[str(NS), "kept"], ["soon", "bad stamp"]]},
            {"stream": {"app": "web" * 40}, "values": [[str(NS), "name too long"]]},
        ]
    }
    async with serving(settings) as served, httpx.AsyncClient(timeout=30) as client:
        partial = await client.post(served.url, json=body)
        garbage = await client.post(
            served.url, content=b"not snappy", headers={"Content-Type": "application/x-protobuf"}
        )
        wrong = await client.post(served.url, content=b"x", headers={"Content-Type": "text/csv"})
        valid = json.dumps({"streams": [{"stream": {"app": "web"}, "values": [[str(NS), "zip"]]}]})
        packed = zlib.compress(valid.encode())
        deflated = await client.post(served.url, content=packed, headers=encoded("deflate"))
        cut = await client.post(served.url, content=packed[:-6], headers=encoded("deflate"))
        brotli = await client.post(served.url, content=packed, headers=encoded("br"))
        await served.published_keys(2)
        await served.store()
        rows = await served.rows()

    assert partial.status_code == 400
    lines = partial.text.splitlines()
    assert lines[0].startswith("entry 1: invalid_field: stream 0: timestamp 'soon'")
    assert lines[1].startswith("entry 2: invalid_field:") and "service_name" in lines[1]
    assert lines[2] == "total ignored: 2 out of 3"
    assert garbage.status_code == 400 and "snappy" in garbage.text
    assert wrong.status_code == 415
    assert deflated.status_code == 204
    assert cut.status_code == 400 and "truncated" in cut.text
    assert brotli.status_code == 415
    assert [r[:2] for r in rows] == [("web", "kept"), ("web", "zip")]


def encoded(encoding: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Content-Encoding": encoding}
