"""The official `elasticsearch` Python client against `lms api` served by uvicorn: its product
check passes, its bulk helper gets per-item errors as it expects from Elasticsearch, the valid
documents arrive in `service_logs` through Pub/Sub and an in-process `lms mon`, and a 429 or
503 reaches it as Elasticsearch's own, with Retry-After."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import uvicorn
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.helpers import BulkIndexError, async_bulk
from fastapi import FastAPI

from lms.api.app import create_app
from lms.devtools.ports import LOCALHOST, free_port
from lms.ingest.http.edge import Accepted
from lms.ingest.http.errors import Overloaded, PublishUnavailable
from lms.ingest.http.publisher import LogPublisher
from lms.ingest.supervisor import Supervisor
from tests.helpers import db_query, ensure_resources, ingest_app, wait_until

pytestmark = pytest.mark.integration

STAMP = "2026-11-23T09:30:00.123Z"


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` on a free local port, in this event loop, stopped at the end; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOCALHOST, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, timeout=15, message="uvicorn started")
        yield f"http://{LOCALHOST}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@asynccontextmanager
async def es_client(url: str, **options: object) -> AsyncIterator[AsyncElasticsearch]:
    client = AsyncElasticsearch(url, **options)
    try:
        yield client
    finally:
        await client.close()


async def test_the_bulk_helper_stores_valid_documents_and_gets_the_rest_back(settings) -> None:
    s = settings(batchsize=10, flushinterval=0.2)
    await ensure_resources(s)
    app = create_app(s, publisher=LogPublisher(s))
    actions = [
        {"_index": "checkout", "_id": "c-1", "message": "paid", "@timestamp": STAMP},
        {
            "_op_type": "create",
            "_index": "logs-generic",
            "_id": "c-2",
            "message": "slow",
            "@timestamp": 1795426200123,
            "log": {"level": "WARN"},
            "service": {"name": "cart"},
            "trace": {"id": "trace-9"},
            "host": {"name": "node-1"},
        },
        {"_index": "checkout", "message": "no time at all"},
        {"_op_type": "delete", "_index": "checkout", "_id": "c-1"},
        {"_index": "vector", "message": "from vector", "timestamp": STAMP, "level": "error"},
    ]
    try:
        async with serving(app) as url, es_client(url) as client:
            info = await client.info()
            assert info["version"]["number"].startswith("8.")
            assert (await client.cluster.health())["status"] == "green"
            stored, failed = await async_bulk(client, actions, raise_on_error=False)
            assert stored == 3
            assert isinstance(failed, list)
            assert [(next(iter(f)), next(iter(f.values()))["status"]) for f in failed] == [
                ("index", 400),
                ("delete", 400),
            ]
            assert failed[0]["index"]["error"]["type"] == "mapper_parsing_exception"
            assert "timestamp" in failed[0]["index"]["error"]["reason"]
            assert failed[1]["delete"]["error"]["type"] == "illegal_argument_exception"
            with pytest.raises(BulkIndexError) as raised:
                await async_bulk(client, [{"_index": "checkout", "message": "no time"}])
            [error] = raised.value.errors
            assert error["index"]["status"] == 400
    finally:
        await app.state.publisher.close()

    supervisor = Supervisor(s, drain_idle=1.0)
    await asyncio.wait_for(supervisor.run(asyncio.Event()), 60)
    rows = await db_query(
        s,
        "SELECT service_name, severity, payload, timestamp, trace_id, metadata"
        " FROM service_logs ORDER BY payload",
    )
    assert [row[:3] for row in rows] == [
        ("vector", "error", "from vector"),
        ("checkout", "info", "paid"),
        ("cart", "warn", "slow"),
    ]
    assert {str(row[3]) for row in rows} == {"2026-11-23 09:30:00.123000"}
    assert rows[2][4] == "trace-9"
    assert json.loads(rows[2][5]) == {"host": {"name": "node-1"}, "_index": "logs-generic"}


class RefusingPublisher:
    """Stands in for LogPublisher when the point is what the client sees of its refusal."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def publish(self, logs: Sequence[Accepted]) -> list[str]:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (Overloaded("busy", retry_after=1.0), 429, "es_rejected_execution_exception"),
        (PublishUnavailable("silent", retry_after=1.0), 503, "unavailable_shards_exception"),
    ],
)
async def test_429_and_503_reach_the_client_as_elasticsearchs(error, status, kind) -> None:
    app = ingest_app(RefusingPublisher(error))
    async with serving(app) as url, es_client(url, max_retries=0) as client:
        with pytest.raises(ApiError) as raised:
            await async_bulk(client, [{"_index": "a", "message": "m", "@timestamp": STAMP}])
    assert raised.value.status_code == status
    assert raised.value.meta.headers["retry-after"] == "1"
    assert raised.value.meta.headers["x-elastic-product"] == "Elasticsearch"
    assert raised.value.body["error"]["type"] == kind
    assert app.state.publisher.calls == 1


async def test_the_helper_retries_a_429_with_max_retries() -> None:
    app = ingest_app(RefusingPublisher(Overloaded("busy", retry_after=1.0)))
    async with serving(app) as url, es_client(url, max_retries=0) as client:
        with pytest.raises(ApiError):
            await async_bulk(
                client,
                [{"_index": "a", "message": "m", "@timestamp": STAMP}],
                max_retries=2,
                initial_backoff=0.01,
            )
    assert app.state.publisher.calls == 3
