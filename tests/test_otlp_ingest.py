"""POST /otlp/v1/logs end to end: the official OpenTelemetry Python SDK and its OTLP/HTTP
exporters (protobuf, gzip, and OTLP/JSON) send logs to `lms api` served by uvicorn, the router
publishes them to the emulator, and `lms mon` (in-process, drain mode) stores them in MariaDB
with the mapped fields. Also: partial success, error answers, and retried exports' keys.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest
import uvicorn
from google.rpc import status_pb2
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.common.http import Compression as JsonCompression
from opentelemetry.exporter.otlp.json.http._log_exporter import (
    OTLPLogExporter as JsonLogExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from lms.api.app import create_app
from lms.devtools.ports import LOCALHOST, free_port
from lms.ingest.http.publisher import KEY_ATTRIBUTE
from lms.ingest.supervisor import Supervisor
from lms.settings import Settings
from tests.helpers import db_query, ensure_resources, pull_all, wait_until

pytestmark = pytest.mark.integration

NANOS = 1_764_547_200_123_456_789  # 2025-12-01T00:00:00.123456789Z
TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C
SPAN_ID = 0xEEE19B7EC3C1B174


@dataclass
class Served:
    settings: Settings
    url: str
    """The OTLP logs endpoint, as OTEL_EXPORTER_OTLP_LOGS_ENDPOINT would name it."""


@pytest.fixture
async def served(settings) -> AsyncIterator[Served]:
    """`lms api` with the OTLP router and a publisher on this test's topic, served by uvicorn
    on a free port in a thread of its own (the SDK's exporters block: they run in threads)."""
    s = settings(batchsize=20, flushinterval=0.3)
    await ensure_resources(s)
    app = create_app(s)  # its lifespan, in uvicorn's loop, opens and closes the publisher
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOCALHOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        await wait_until(lambda: server.started, timeout=15, message="uvicorn started")
        yield Served(s, f"http://{LOCALHOST}:{port}/otlp/v1/logs")
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 15)


def emit_through_sdk(exporter: LogRecordExporter, service: str, batch: bool) -> None:
    """What an instrumented service does: a LoggerProvider with the service's resource, the
    OTLP exporter behind a processor, records with and without trace context; then shutdown,
    which exports what is pending."""
    resource = Resource.create({"service.name": service, "deployment.environment": "test"})
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    processor = BatchLogRecordProcessor(exporter) if batch else SimpleLogRecordProcessor(exporter)
    provider.add_log_record_processor(processor)
    logger = provider.get_logger("shop.checkout", "1.4")
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(1)))
    logger.emit(
        timestamp=NANOS,
        context=trace.set_span_in_context(span),
        severity_number=SeverityNumber.ERROR,
        body="payment declined",
        attributes={"order.id": 1234, "retry": True},
    )
    logger.emit(
        timestamp=NANOS + 1_000_000,
        severity_number=SeverityNumber.DEBUG2,
        body={"cart": ["a", "b"], "total": 9.5},
    )
    logger.emit(timestamp=NANOS + 2_000_000, severity_text="WARNING", body="no number, a text")
    provider.shutdown()


def expected(service: str) -> list[tuple]:
    """The rows of what emit_through_sdk sent, as service_logs holds them."""
    second = datetime(2025, 12, 1, 0, 0, 0)
    return [
        (
            service,
            "payment declined",
            "error",
            second.replace(microsecond=123456),
            "5b8efff798038103d269b633813fc60c",
            "eee19b7ec3c1b174",
        ),
        (
            service,
            '{"cart":["a","b"],"total":9.5}',
            "debug",
            second.replace(microsecond=124456),
            None,
            None,
        ),
        (service, "no number, a text", "warn", second.replace(microsecond=125456), None, None),
    ]


async def stored(s: Settings) -> list[tuple]:
    return await db_query(
        s,
        "SELECT service_name, payload, severity, `timestamp`, trace_id, span_id, metadata"
        " FROM service_logs ORDER BY service_name, `timestamp`",
    )


async def test_the_sdk_exporters_logs_reach_service_logs_with_the_mapped_fields(served) -> None:
    proto = OTLPLogExporter(endpoint=served.url, compression=Compression.Gzip)
    await asyncio.to_thread(emit_through_sdk, proto, "otel-proto", True)
    as_json = JsonLogExporter(endpoint=served.url, compression=JsonCompression.NONE)
    await asyncio.to_thread(emit_through_sdk, as_json, "otel-json", False)

    await asyncio.wait_for(Supervisor(served.settings, drain_idle=1.0).run(asyncio.Event()), 60)
    rows = await stored(served.settings)
    assert [row[:6] for row in rows] == expected("otel-json") + expected("otel-proto")
    for row in rows:
        metadata = json.loads(row[6])
        assert metadata["resource"]["service.name"] == row[0]
        assert metadata["resource"]["deployment.environment"] == "test"
        assert metadata["resource"]["telemetry.sdk.language"] == "python"
        assert metadata["scope"] == {"name": "shop.checkout", "version": "1.4"}
    assert json.loads(rows[0][6])["attributes"] == {"order.id": 1234, "retry": True}


def export_request(*bodies: str, service: str = "otel-raw") -> ExportLogsServiceRequest:
    message = ExportLogsServiceRequest()
    resource_logs = message.resource_logs.add()
    name = resource_logs.resource.attributes.add()
    name.key, name.value.string_value = "service.name", service
    scope_logs = resource_logs.scope_logs.add()
    for n, body in enumerate(bodies):
        record = scope_logs.log_records.add(time_unix_nano=NANOS + n, severity_number=9)
        record.body.string_value = body
    return message


async def test_partial_success_names_the_refused_records_and_publishes_the_rest(served) -> None:
    body = export_request("fine", "x" * 3000, "also fine").SerializeToString()
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            served.url,
            content=gzip.compress(body),
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    partial = ExportLogsServiceResponse.FromString(answer.content).partial_success
    assert partial.rejected_log_records == 1
    assert partial.error_message.startswith("1 of 3 log records rejected: record 1: invalid_field")
    await asyncio.wait_for(Supervisor(served.settings, drain_idle=1.0).run(asyncio.Event()), 60)
    # Rows are written in key order (a content hash), not in record order.
    assert sorted(row[1] for row in await stored(served.settings)) == ["also fine", "fine"]


async def test_errors_are_google_rpc_status_bodies(served) -> None:
    async with httpx.AsyncClient() as client:
        garbled = await client.post(
            served.url, content=b"\xff\xff\xff", headers={"Content-Type": "application/x-protobuf"}
        )
        bad_json = await client.post(
            served.url, content=b"{", headers={"Content-Type": "application/json"}
        )
        other = await client.post(served.url, content=b"x", headers={"Content-Type": "text/plain"})
        empty = await client.post(
            served.url, content=b"{}", headers={"Content-Type": "application/json"}
        )
    assert garbled.status_code == 400
    assert "not a protobuf" in status_pb2.Status.FromString(garbled.content).message
    assert bad_json.status_code == 400 and bad_json.headers["content-type"] == "application/json"
    assert "not valid JSON" in bad_json.json()["message"]
    assert other.status_code == 415 and "Content-Type must be" in other.json()["message"]
    assert empty.status_code == 200 and empty.json() == {}


async def test_a_retried_export_publishes_the_same_keys(served) -> None:
    """The second subscription sees what the router published: a retry of the same export
    carries the same content-derived keys, which is what lets storage keep one copy."""
    keys = served.settings.model_copy(
        update={"pubsub_subscription": served.settings.pubsub_subscription + "-keys"}
    )
    await ensure_resources(keys)
    document = export_request("one", "two", "three")
    async with httpx.AsyncClient() as client:
        for _attempt in range(2):
            answer = await client.post(
                served.url,
                content=document.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert answer.status_code == 200 and answer.content == b""
    messages = await pull_all(keys, 6)
    by_payload: dict[str, set[str]] = {}
    for received in messages:
        payload = json.loads(received.message.data)["payload"]
        by_payload.setdefault(payload, set()).add(received.message.attributes[KEY_ATTRIBUTE])
    assert sorted(by_payload) == ["one", "three", "two"]
    assert all(len(found) == 1 for found in by_payload.values()), by_payload
    assert len({key for found in by_payload.values() for key in found}) == 3
