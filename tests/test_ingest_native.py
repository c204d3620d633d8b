"""Native HTTP ingestion, `POST /v1/logs`, against the real emulator and MariaDB.

The body reader's limits are checked on a bare Starlette app (no Pub/Sub needed); the endpoint
through the real app with its real publisher, over ASGI where a socket is not the point, and
once as a real `lms api` child, whose logs a real `lms mon --drain` then stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import re
import sys
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import zstandard
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis import checks
from schemathesis.python.asgi import get_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lms.api.app import create_app
from lms.devtools.ports import free_port
from lms.devtools.resources import delete_resources
from lms.ingest.http.body import BodyLimits, read_body
from lms.ingest.http.edge import Refused
from lms.ingest.http.errors import IngestError
from lms.ingest.http.native import decode
from lms.ingest.http.publisher import KEY_ATTRIBUTE
from lms.ops import api_metrics
from lms.settings import Settings, load_settings
from tests.helpers import SettingsFactory, db_query, ensure_resources, pull_all, wait_until
from tests.lms_process import (
    lms_api,
    lms_mon_fixture,  # noqa: F401  (the `lms_mon` fixture)
)

LMS = str(Path(sys.executable).with_name("lms"))
STAMP = "2026-12-01T08:00:00Z"
NDJSON = {"Content-Type": "application/x-ndjson"}


def log(service: str = "svc", severity: str = "info", **extra: Any) -> dict[str, Any]:
    return {
        "service_name": service,
        "payload": "hello",
        "severity": severity,
        "timestamp": STAMP,
        **extra,
    }


def ndjson(*logs: object) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in logs)


# --- the body reader, on its own -----------------------------------------------------------

LIMITS = BodyLimits(max_body=2 << 20, max_decoded=8 << 20)


async def _echo(request: Request) -> Response:
    try:
        body = await read_body(request, LIMITS)
    except IngestError as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    return Response(body)


@pytest.fixture
async def echo() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Route("/", _echo, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


TEXT = ndjson(*[log(payload=f"line {i}") for i in range(500)])


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("identity", lambda b: b),
        ("", lambda b: b),
        ("gzip", gzip.compress),
        ("x-gzip", lambda b: gzip.compress(b[:100]) + gzip.compress(b[100:])),  # two members
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
    ],
)
async def test_every_encoding_gives_the_body_back(
    echo: httpx.AsyncClient, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    response = await echo.post("/", content=encode(TEXT), headers={"Content-Encoding": encoding})
    assert response.status_code == 200, response.text
    assert response.content == TEXT


async def test_unknown_encoding_is_415(echo: httpx.AsyncClient) -> None:
    response = await echo.post("/", content=b"{}", headers={"Content-Encoding": "br"})
    assert response.status_code == 415
    assert "identity, gzip, deflate, zstd" in response.json()["detail"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd"])
async def test_corrupt_or_truncated_streams_are_400(echo: httpx.AsyncClient, encoding: str) -> None:
    for body in (b"not compressed at all", gzip.compress(TEXT)[:-30]):
        response = await echo.post("/", content=body, headers={"Content-Encoding": encoding})
        assert response.status_code == 400, (encoding, body[:10], response.text)


async def test_a_body_over_the_wire_bound_is_413(echo: httpx.AsyncClient) -> None:
    big = b"x" * (LIMITS.max_body + 1)
    response = await echo.post("/", content=big)
    assert response.status_code == 413
    assert "INGEST_MAX_BODY_BYTES" in response.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(LIMITS.max_body // 65536 + 2):
            yield b"x" * 65536

    response = await echo.post("/", content=chunks())
    assert response.status_code == 413


@pytest.mark.parametrize("declared", [b"\xb2", b"\xb9\xb3", b"-1", b"1e3", b""])
async def test_a_content_length_that_is_no_number_is_left_to_the_count(
    echo: httpx.AsyncClient, declared: bytes
) -> None:
    """A server may hand the header over as it came: b"\xb2" is "²" as latin-1, which
    str.isdigit() takes for a digit and int() refuses. Never a 500: the body is read and
    bounded by what arrives."""
    response = await echo.post("/", content=b"{}", headers={"Content-Length": declared})
    assert (response.status_code, response.content) == (200, b"{}")
    big = b"x" * (LIMITS.max_body + 1)
    response = await echo.post("/", content=big, headers={"Content-Length": declared})
    assert response.status_code == 413


@functools.cache
def _gzip_of_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    return b"".join(compressor.compress(block) for _ in range(size >> 20)) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "bomb"),
    [
        ("gzip", lambda: _gzip_of_zeros(1 << 30)),
        ("zstd", lambda: zstandard.ZstdCompressor().compress(bytes(256 << 20))),
    ],
)
async def test_a_compression_bomb_is_refused_early_in_bounded_memory(
    echo: httpx.AsyncClient, encoding: str, bomb: Callable[[], bytes]
) -> None:
    body = bomb()  # 1 GiB of zeros is ~1 MB of gzip, under the wire bound
    assert len(body) <= LIMITS.max_body
    tracemalloc.start()
    started = time.monotonic()
    try:
        response = await echo.post("/", content=body, headers={"Content-Encoding": encoding})
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert "INGEST_MAX_DECODED_BYTES" in response.json()["detail"]
    assert time.monotonic() - started < 5
    assert peak < 4 * LIMITS.max_decoded  # the limit and its copies, never the gigabyte


# --- the native format, on its own ---------------------------------------------------------


def test_ids_become_keys_and_leave_the_fields() -> None:
    items = decode(json.dumps([log(id="a-1"), log(), log(id=None)]).encode(), None, 10)
    assert [(item.index, getattr(item, "key", "?")) for item in items] == [
        (0, "a-1"),
        (1, None),
        (2, None),
    ]
    assert all("id" not in getattr(item, "fields", {}) for item in items)


def test_ndjson_lines_keep_their_numbers() -> None:
    body = ndjson(log()) + b"\n   \n" + b"{oops\n" + b"\xff\xfe\n" + b"[1]\n" + ndjson(log())
    items = decode(body, "application/x-ndjson; charset=utf-8", 10)
    assert [(item.index, getattr(item, "reason", "ok")) for item in items] == [
        (0, "ok"),
        (3, "invalid_json"),
        (4, "invalid_utf8"),
        (5, "not_an_object"),
        (6, "ok"),
    ]


LOG_TEXT = json.dumps(log(payload="p"))
TWICE = LOG_TEXT[:-1] + ', "severity": "error"}'
"""A log naming `severity` twice: which one it meant, no reader can tell."""


def test_a_duplicate_key_refuses_only_its_own_log_in_every_form() -> None:
    for body, content_type in (
        (f"[{LOG_TEXT}, {TWICE}, {LOG_TEXT}]".encode(), None),
        (f"{LOG_TEXT}\n{TWICE}\n{LOG_TEXT}\n".encode(), "application/x-ndjson"),
    ):
        items = decode(body, content_type, 10)
        assert [type(item).__name__ for item in items] == ["Candidate", "Refused", "Candidate"]
        refused = items[1]
        assert isinstance(refused, Refused)
        assert (refused.index, refused.reason) == (1, "invalid_json")
        assert "'severity'" in refused.detail
    [alone] = decode(TWICE.encode(), None, 10)
    assert isinstance(alone, Refused) and alone.reason == "invalid_json"
    nested = decode(b'[{"metadata": {"k": 1, "k": 2}}]', None, 10)
    assert isinstance(nested[0], Refused) and "'k'" in nested[0].detail


def test_a_body_with_a_duplicate_key_must_still_be_json_as_a_whole() -> None:
    for body in (f"[{TWICE}, oops]", f"{TWICE} trailing"):
        with pytest.raises(IngestError) as refused:
            decode(body.encode(), None, 10)
        assert refused.value.status == 400


@pytest.mark.parametrize("key", ["k-1 ", " k-1", "k\x1b1", "k\n", " "])
def test_an_id_with_whitespace_at_an_end_or_a_control_is_refused(key: str) -> None:
    # The key column compares PAD SPACE: `k-1 ` would be dropped as a duplicate of `k-1`.
    [item] = decode(json.dumps(log(id=key)).encode(), None, 10)
    assert isinstance(item, Refused)
    assert item.reason == "invalid_id"
    assert "whitespace" in item.detail or "control character" in item.detail


@pytest.mark.parametrize("body", [b"", b"{", b"42", b'"a log"', b"null", b"\xff", b"[" * 100_000])
def test_a_body_that_is_not_the_format_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(IngestError) as refused:
        decode(body, "application/json", 10)
    assert refused.value.status == 400


# --- POST /v1/logs through the app ---------------------------------------------------------


@pytest.fixture
async def api(settings: SettingsFactory) -> AsyncIterator[Callable[..., Any]]:
    """`await api(**overrides) -> (httpx client, Settings)`: the app on this test's topic."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: Any) -> tuple[httpx.AsyncClient, Settings]:
            s = settings(**overrides)
            await ensure_resources(s)
            app = create_app(s)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://lms", timeout=60
            )
            await stack.enter_async_context(client)
            return client, s

        yield make


def _bodies(messages: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(rm.message.data) for rm in messages]


@pytest.mark.parametrize(
    ("content", "headers", "count"),
    [
        (json.dumps(log(payload="one")).encode(), {}, 1),
        (json.dumps([log(payload=f"a{i}") for i in range(3)]).encode(), {}, 3),
        (ndjson(*[log(payload=f"n{i}") for i in range(4)]), NDJSON, 4),
        (gzip.compress(ndjson(*[log()] * 5)), {**NDJSON, "Content-Encoding": "gzip"}, 5),
        (zlib.compress(json.dumps([log()] * 2).encode()), {"Content-Encoding": "deflate"}, 2),
        (
            zstandard.ZstdCompressor().compress(json.dumps([log()] * 6).encode()),
            {"Content-Encoding": "zstd"},
            6,
        ),
    ],
    ids=["object", "array", "ndjson", "gzip", "deflate", "zstd"],
)
async def test_every_form_is_published(
    api: Callable[..., Any], content: bytes, headers: dict[str, str], count: int
) -> None:
    client, s = await api()
    response = await client.post("/v1/logs", content=content, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": count, "rejected": []}
    published = _bodies(await pull_all(s, count))
    assert len(published) == count
    assert all(body["service_name"] == "svc" for body in published)


async def test_partial_acceptance_names_each_refused_log(api: Callable[..., Any]) -> None:
    client, s = await api()
    body = [
        log(payload="kept-0", id="k-0"),
        log(severity="loud"),
        "not an object",
        log(id=""),
        log(id="x" * 129),
        {"payload": "no service"},
        log(payload="kept-6", id="k-6"),
    ]
    response = await client.post("/v1/logs", json=body)
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 2
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
        (1, "invalid_field"),
        (2, "not_an_object"),
        (3, "invalid_id"),
        (4, "invalid_id"),
        (5, "missing_field"),
    ]
    assert all(r["detail"] for r in answer["rejected"])
    messages = await pull_all(s, 2)
    keys = {rm.message.attributes[KEY_ATTRIBUTE]: json.loads(rm.message.data) for rm in messages}
    assert sorted(keys) == ["k-0", "k-6"]
    assert all("id" not in fields for fields in keys.values())


async def test_names_ids_far_future_timestamps_and_duplicate_keys_are_refused_each(
    api: Callable[..., Any],
) -> None:
    """Issue 14 through the real app: each bad log is refused by itself with its reason,
    never published trimmed or altered; the valid ones are published as sent."""
    client, s = await api()
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    logs = [
        log(service="svc "),
        log(trace_id="t\x1b]0;pwned\x07"),
        log(id="k-2 "),
        log(timestamp=ahead),
        log(payload="kept-4", id="k-4", timestamp=soon),
        log(metadata={"parentResourceId": " p"}),
    ]
    parts = [json.dumps(item) for item in logs]
    parts.insert(5, TWICE)
    response = await client.post("/v1/logs", content=f"[{', '.join(parts)}]".encode())
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
        (0, "invalid_field"),
        (1, "invalid_field"),
        (2, "invalid_id"),
        (3, "invalid_field"),
        (5, "invalid_json"),
        (6, "invalid_field"),
    ]
    details = [r["detail"] for r in answer["rejected"]]
    assert "service_name" in details[0] and "whitespace" in details[0]
    assert "trace_id" in details[1] and "U+001B" in details[1]
    assert "MAX_FUTURE_SKEW" in details[3]
    assert "'severity'" in details[4]
    [message] = await pull_all(s, 1)
    assert message.message.attributes[KEY_ATTRIBUTE] == "k-4"
    assert json.loads(message.message.data)["payload"] == "kept-4"


async def test_max_future_skew_is_the_apps_setting(api: Callable[..., Any]) -> None:
    client, s = await api(max_future_skew=7200)
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await client.post("/v1/logs", json=log(timestamp=ahead))
    assert response.status_code == 202, response.text
    assert len(await pull_all(s, 1)) == 1


async def test_no_valid_log_is_400_with_the_same_shape(api: Callable[..., Any]) -> None:
    client, _s = await api()
    response = await client.post("/v1/logs", content=ndjson(log(severity="x"), 7), headers=NDJSON)
    assert response.status_code == 400
    assert response.json()["accepted"] == 0
    assert [(r["index"], r["reason"]) for r in response.json()["rejected"]] == [
        (0, "invalid_field"),
        (1, "not_an_object"),
    ]
    response = await client.post("/v1/logs", content=b"this is not json")
    assert response.status_code == 400 and "not JSON" in response.json()["detail"]


async def test_request_limits_are_413_and_415(api: Callable[..., Any]) -> None:
    client, _s = await api(ingest_max_body_bytes=4096, ingest_max_logs=3)
    too_many = await client.post("/v1/logs", json=[log()] * 4)
    assert too_many.status_code == 413 and "INGEST_MAX_LOGS" in too_many.json()["detail"]
    too_big = await client.post("/v1/logs", json=log(payload="x" * 5000))
    assert too_big.status_code == 413 and "INGEST_MAX_BODY_BYTES" in too_big.json()["detail"]
    bomb = await client.post(
        "/v1/logs", content=gzip.compress(bytes(100 << 20)), headers={"Content-Encoding": "gzip"}
    )
    assert bomb.status_code == 413  # 100 KB of gzip: over the wire bound already
    encoding = await client.post("/v1/logs", json=log(), headers={"Content-Encoding": "br"})
    assert encoding.status_code == 415


async def test_a_gzip_bomb_under_the_wire_bound_is_413(api: Callable[..., Any]) -> None:
    client, _s = await api(ingest_max_decoded_bytes=1 << 20)
    bomb = await client.post(
        "/v1/logs", content=_gzip_of_zeros(1 << 30), headers={"Content-Encoding": "gzip"}
    )
    assert bomb.status_code == 413 and "INGEST_MAX_DECODED_BYTES" in bomb.json()["detail"]


async def test_429_and_503_through_the_router(
    api: Callable[..., Any], settings: SettingsFactory, tcp_proxy: Any
) -> None:
    base = settings()
    await ensure_resources(base)
    host, port = (base.pubsub_emulator_host or "").rsplit(":", 1)
    proxy = await tcp_proxy(host, int(port))
    client, _s = await api(
        pubsub_emulator_host=f"127.0.0.1:{proxy.port}",
        ingest_max_inflight_bytes=1 << 20,
        ingest_publish_timeout=2,
    )
    try:
        assert (await client.post("/v1/logs", json=log())).status_code == 202
        await proxy.blackhole()
        half = [log(payload="x" * 2000)] * 300  # 600 KB, twice over the 1 MiB bound
        first = asyncio.create_task(client.post("/v1/logs", json=half))
        await wait_until(lambda: _inflight(client), timeout=10, message="first request in flight")
        overloaded = await client.post("/v1/logs", json=half)
        assert overloaded.status_code == 429
        assert overloaded.headers["Retry-After"] == "1"
        assert "INGEST_MAX_INFLIGHT_BYTES" in overloaded.json()["detail"]
        unavailable = await first
        assert unavailable.status_code == 503
        assert unavailable.headers["Retry-After"] == "1"
    finally:
        await proxy.restore()
    metrics = (await client.get("/metrics")).text
    assert 'lms_api_ingest_retry_later_total{endpoint="native",status="429"}' in metrics
    assert 'lms_api_ingest_retry_later_total{endpoint="native",status="503"}' in metrics


async def _inflight(client: httpx.AsyncClient) -> bool:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("lms_api_publish_inflight_bytes "):
            return float(line.split()[1]) > 500_000
    return False


async def test_metrics_count_requests_and_logs(api: Callable[..., Any]) -> None:
    client, _s = await api()
    await client.post("/v1/logs", json=[log(), log(severity="loud")])
    text = (await client.get("/metrics")).text
    for name in (
        'lms_api_ingest_requests_total{endpoint="native",status_class="2xx"}',
        'lms_api_logs_accepted_total{endpoint="native"}',
        'lms_api_logs_rejected_total{endpoint="native",reason="invalid_field"}',
        "lms_api_publish_duration_seconds_count",
        "process_resident_memory_bytes",
    ):
        assert name in text, name


# --- the parts -----------------------------------------------------------------------------


async def test_api_ingest_false_removes_ingestion(api: Callable[..., Any]) -> None:
    client, _s = await api(api_ingest=False)
    assert (await client.post("/v1/logs", json=log())).status_code == 405
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/logs"]) == {"get"}
    assert "/v1/services" in paths


async def test_api_query_false_removes_the_query_api(api: Callable[..., Any]) -> None:
    client, _s = await api(api_query=False, mysql_port=1)  # no database needed at all
    assert (await client.get("/v1/logs")).status_code == 405
    assert (await client.get("/v1/services")).status_code == 404
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.post("/v1/logs", json=log())).status_code == 202
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths) == {
        "/v1/logs",
        "/otlp/v1/logs",
        "/loki/api/v1/push",
        "/_bulk",
        "/{index}/_bulk",
        *("/", "/_cluster/health", "/_license", "/_xpack"),  # what Elasticsearch shippers probe
        "/healthz",
        "/readyz",
        "/metrics",
    }


# --- a real `lms api`, then a real `lms mon` -----------------------------------------------


async def test_lms_api_ingests_and_lms_mon_stores(
    settings: SettingsFactory, lms_mon: Any, tmp_path: Path
) -> None:
    s = settings()
    await ensure_resources(s)
    async with lms_api(s, tmp_path, API_WORKERS="2") as c:
        logs = [log(service="svc-e2e", payload=f"e{i}", id=f"e-{i}") for i in range(50)]
        headers = {**NDJSON, "Content-Encoding": "gzip"}
        answers = await asyncio.gather(
            c.post("/v1/logs", content=gzip.compress(ndjson(*logs)), headers=headers),
            c.post("/v1/logs", json=[log(service="svc-e2e", payload="arr")] * 10),
        )
        assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]

        # Any worker's /metrics reports every worker's (prometheus_client's multiprocess
        # mode): both workers' RSS series (once both are up), and the 60 logs whichever
        # worker took them.
        async def both_workers_reported() -> bool:
            text = await fresh_connection_get(c, "/metrics")
            # At least: a worker uvicorn restarted (it pings them) leaves its series behind.
            return len(re.findall(r"^lms_api_worker_resident_memory_bytes\{", text, re.M)) >= 2

        await wait_until(both_workers_reported, timeout=60, message="two workers' RSS series")
        for _ in range(4):
            text = await fresh_connection_get(c, "/metrics")
            assert 'lms_api_logs_accepted_total{endpoint="native"} 60.0' in text
    monitor = lms_mon(settings(flushinterval=0.2), args=("--drain", "1"))
    assert await monitor.wait(60) == 0
    rows = await db_query(s, "SELECT COUNT(*) FROM service_logs WHERE service_name = 'svc-e2e'")
    assert rows == [(60,)]


async def fresh_connection_get(client: httpx.AsyncClient, path: str) -> str:
    """GET on a new connection, so the kernel may hand it to any worker of the socket."""
    async with httpx.AsyncClient(base_url=client.base_url, timeout=30) as fresh:
        answer = await fresh.get(path)
    assert answer.status_code == 200, answer.text
    return answer.text


# --- schemathesis ----------------------------------------------------------------------------

# Built at import for schemathesis, its document read without serving it (serving would run
# the lifespan, whose publisher needs the emulator); the `fuzz_client` fixture points the app
# at this test's topic before its lifespan starts.
fuzzed_app = create_app(load_settings(_env_file=None, api_query=False, api_allowed_hosts="*"))
schema = schemathesis.openapi.from_dict(fuzzed_app.openapi())


@schemathesis.serializer("application/x-ndjson")
def _ndjson_text(_ctx: Any, value: Any) -> bytes:
    """The generated NDJSON body (a string, per the schema) as its UTF-8 bytes."""
    return str(value).encode("utf-8", "surrogatepass")


@pytest.fixture
def fuzz_client(settings: SettingsFactory) -> Iterator[Any]:
    s = settings(api_query=False)
    asyncio.run(ensure_resources(s))
    fuzzed_app.state.settings = s
    with get_client(fuzzed_app) as test_client:
        yield test_client


@schema.parametrize()
@hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
def test_openapi_fuzz(case: Any, fuzz_client: Any) -> None:
    """Every ingestion route (native, OTLP, Loki, Elasticsearch): every answer is documented
    and none is a 5xx. Both data-acceptance checks are left out:
    a body the schema allows may still be refused (a timestamp without an offset), and one
    it does not allow may be accepted in part (partial acceptance: a valid log beside an
    invalid one is published, 202)."""
    response = case.call(base_url="http://testserver", session=fuzz_client)
    case.validate_response(
        response,
        # The Elasticsearch bulk paths are one route per method (each with its own operation
        # id), and Starlette's 405 names only the first one's method in `Allow`.
        excluded_checks=[
            checks.positive_data_acceptance,
            checks.negative_data_rejection,
            checks.allow_header_conformance,
        ],
    )
    assert response.status_code < 500, response.text


def test_readme_documents_every_api_metric() -> None:
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    for metric in api_metrics.REGISTRY.collect():
        if not metric.name.startswith("process_"):
            exposed = metric.name + ("_total" if metric.type == "counter" else "")
            assert exposed in text, f"README does not document {exposed}"


async def test_ingestion_without_pub_sub_credentials_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    app = create_app(load_settings(_env_file=None, pubsub_emulator_host=None))
    with pytest.raises(RuntimeError, match="API_INGEST=false"):
        async with app.router.lifespan_context(app):
            pass


def test_openapi_documents_the_ingestion_endpoint() -> None:
    operation = fuzzed_app.openapi()["paths"]["/v1/logs"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert [p["name"] for p in operation["parameters"]] == ["Content-Encoding"]
    assert set(operation["responses"]) >= {"202", "400", "413", "415", "429", "503"}
    assert "Retry-After" in operation["responses"]["503"]["headers"]


# --- /readyz of an ingestion node ------------------------------------------------------------


async def test_readyz_says_whether_pubsub_has_the_topic(api: Callable[..., Any]) -> None:
    client, s = await api(api_query=False)
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    await delete_resources(s)
    answer = await client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"detail": "the Pub/Sub topic does not exist"}
    assert answer.headers["Retry-After"] == "1"


async def test_readyz_fails_fast_when_pubsub_cannot_be_reached(
    settings: SettingsFactory,
) -> None:
    s = settings(api_query=False, pubsub_emulator_host=f"127.0.0.1:{free_port()}")
    app = create_app(s)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        started = time.monotonic()
        answer = await c.get("/readyz")
    assert (answer.status_code, answer.json()) == (503, {"detail": "Pub/Sub cannot be reached"})
    assert time.monotonic() - started < 10  # bounded by PING_TIMEOUT, not the client's retries
