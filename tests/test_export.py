"""GET /v1/logs/export and `lms logs --export` against a real MariaDB.

A few hundred logs with awkward payloads (commas, quotes, line breaks, unicode, formulas) are
stored through the real write path; each filter's export is compared with the pages of
GET /v1/logs (whose own oracle is tests/test_query_api.py). 100,000 bulk-loaded rows are
exported by a real `lms api` whose resident memory is sampled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pymysql
import pytest

from lms.api.app import create_app
from lms.devtools.monitor_process import child_environment
from lms.devtools.seed import bulk_load
from lms.domain.record import LogRecord, Rules, parse_message
from lms.query.export import CSV_COLUMNS, formula_safe
from lms.settings import Settings, load_settings
from lms.store.migrations import Migrator
from lms.store.writer import BatchWriter, StoredLog
from tests.conftest import mysql_config, query_settings
from tests.lms_process import lms_api

pytestmark = pytest.mark.integration

LMS = str(Path(sys.executable).with_name("lms"))
BASE = datetime(2024, 5, 1, 12, 0, 0)
AWKWARD = (
    "plain words only",
    "a, b, and c",
    'she said "hello", then left',
    "line one\nline two\r\nline three",
    "unicode: żółć 日本語 🚀",
    '=HYPERLINK("http://evil","click")',
    "+1 more",
    "-2 less",
    "@SUM(A1:A2)",
    "\ttabbed",
    "'quoted already",
    "   leading spaces",
)


def _admin(sql: str) -> None:
    conn = pymysql.connect(**mysql_config(), charset="utf8mb4", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@contextlib.contextmanager
def _database() -> Iterator[str]:
    name = f"lms_test_{secrets.token_hex(6)}"
    _admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        yield name
    finally:
        _admin(f"DROP DATABASE IF EXISTS `{name}`")


def _bodies() -> list[dict[str, Any]]:
    out = []
    for i in range(360):
        body: dict[str, Any] = {
            "service_name": ("api", "billing", "worker")[i % 3],
            "severity": ("debug", "info", "warn", "error", "fatal")[i % 5],
            "payload": f"{AWKWARD[i % len(AWKWARD)]} #{i}",
            # pairs share a timestamp: the id breaks the tie
            "timestamp": (BASE + timedelta(seconds=i // 2)).replace(tzinfo=UTC).isoformat(),
        }
        if i % 4:
            body["resource_id"] = f"vm-{i % 4}"
        if i % 6 < 4:
            body["trace_id"] = f"trace-{i // 6}"
            body["span_id"] = f"span-{i}"
        if i % 7 < 3:
            body["commit"] = ("c0ffee1", "deadbee", "=cmd|x")[i % 7]
        if i % 2:
            body["metadata"] = {
                "parentResourceId": ("cluster-a", "cluster-b")[i % 4 // 2],
                "user_id": i % 9,
                "note": 'a "quoted", text',
            }
        out.append(body)
    return out


async def _store(settings: Settings) -> None:
    rules = Rules(clock=lambda: datetime(9999, 1, 1, tzinfo=UTC).timestamp())
    await Migrator(settings).migrate()
    writer = BatchWriter(settings)
    try:
        logs = []
        for i, body in enumerate(_bodies()):
            record = parse_message(json.dumps(body).encode(), rules)
            assert isinstance(record, LogRecord), record
            logs.append(StoredLog(f"msg-{i:04d}", record))
        for start in range(0, len(logs), 100):
            await writer.write_batch(logs[start : start + 100], [])
    finally:
        await writer.close()


@pytest.fixture(scope="module")
def stored() -> Iterator[Settings]:
    with _database() as name:
        settings = query_settings(name)
        asyncio.run(_store(settings))
        yield settings


@pytest.fixture
async def client(stored: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stored)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        yield c


async def _paged(client: httpx.AsyncClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item GET /v1/logs gives for `params`, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 50, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/v1/logs", params=query)).json()
        items += body["logs"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def _ndjson(text: str) -> list[dict[str, Any]]:
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _csv_cells(item: dict[str, Any]) -> list[str]:
    """What the CSV holds for a /v1/logs item (formula_safe's apostrophe included)."""
    cells = []
    for column in CSV_COLUMNS:
        value = item[column]
        if column == "metadata" and value is not None:
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        cells.append(str(value) if column == "id" else formula_safe(value))
    return cells


FILTERS: list[dict[str, Any]] = [
    {"service": "billing"},
    {"severity": "error"},
    {"severity": ["warn", "fatal"]},
    {"from": "2024-05-01T12:01:00Z"},
    {"to": "2024-05-01T12:01:00Z"},
    {"from": "2024-05-01T12:00:30Z", "to": "2024-05-01T12:02:00Z"},
    {"resource_id": "vm-2"},
    {"trace_id": "trace-7"},
    {"span_id": "span-13"},
    {"commit": "deadbee"},
    {"parent_resource_id": "cluster-b"},
    {"user_id": "4"},
    {"q": "quoted"},
    {"service": "api", "severity": ["info", "error"], "resource_id": "vm-3", "q": "line"},
]


async def test_ndjson_export_is_every_page_of_v1_logs(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/logs/export", params={"format": "ndjson"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="lms-logs-')
    assert disposition.endswith('.ndjson"')
    items = _ndjson(response.text)
    assert len(items) == 360
    assert items == await _paged(client, {})


@pytest.mark.parametrize("filters", FILTERS, ids=json.dumps)
async def test_every_filter_passes_through(
    client: httpx.AsyncClient, filters: dict[str, Any]
) -> None:
    expected = await _paged(client, filters)
    assert 0 < len(expected) < 360, "the filter must select something, not everything"
    exported = await client.get("/v1/logs/export", params={**filters, "format": "ndjson"})
    assert _ndjson(exported.text) == expected
    as_csv = await client.get("/v1/logs/export", params={**filters, "format": "csv"})
    assert [row[0] for row in list(csv.reader(io.StringIO(as_csv.text)))[1:]] == [
        str(item["id"]) for item in expected
    ]


async def test_csv_parses_back_to_the_same_values(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/logs/export", params={"format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].endswith('.csv"')
    header, *rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert header == list(CSV_COLUMNS)
    items = await _paged(client, {})
    assert rows == [_csv_cells(item) for item in items]
    payloads = {row[4].rsplit(" #", 1)[0] for row in rows}
    assert "line one\nline two\r\nline three" in payloads  # line breaks survive, quoted
    assert 'she said "hello", then left' in payloads
    assert "unicode: żółć 日本語 🚀" in payloads
    # formulas are defused, and only they are changed
    assert '\'=HYPERLINK("http://evil","click")' in payloads
    assert {"'+1 more", "'-2 less", "'@SUM(A1:A2)", "'\ttabbed"} <= payloads
    assert {"'quoted already", "   leading spaces"} <= payloads
    assert "'=cmd|x" in {row[8] for row in rows}
    assert not any(cell.startswith(("=", "+", "-", "@", "\t")) for row in rows for cell in row)
    nulls = [item for item in items if item["resource_id"] is None]
    assert nulls and all(rows[items.index(item)][5] == "" for item in nulls)


async def test_an_empty_export_is_its_header_alone(client: httpx.AsyncClient) -> None:
    params = {"service": "nope"}
    csv_text = (await client.get("/v1/logs/export", params={**params, "format": "csv"})).text
    assert csv_text == ",".join(CSV_COLUMNS) + "\r\n"
    ndjson = await client.get("/v1/logs/export", params={**params, "format": "ndjson"})
    assert ndjson.status_code == 200
    assert ndjson.text == ""


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "format"),
        ({"format": "xml"}, "format"),
        ({"format": "csv", "limit": "10"}, "limit"),
        ({"format": "csv", "cursor": "abc"}, "cursor"),
        ({"format": "csv", "severity": "loud"}, "severity"),
        ({"format": "csv", "from": "yesterday"}, "from"),
        ({"format": "csv", "from": "2024-05-02T00:00:00Z", "to": "2024-05-01T00:00:00Z"}, "to"),
        ({"format": "csv", "service": "api "}, "service"),
        ({"format": "csv", "q": "to"}, "q"),
    ],
)
async def test_bad_parameters_are_a_422_naming_them(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/logs/export", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert any(field in error["loc"] for error in response.json()["detail"]), response.text


async def test_database_down_before_the_first_byte_is_a_503() -> None:
    config = mysql_config()
    settings = load_settings(
        _env_file=None, mysql_host=config["host"], mysql_port=1, api_ingest=False
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c,
    ):
        response = await c.get("/v1/logs/export", params={"format": "csv"})
    assert response.status_code == 503
    assert response.json()["detail"]


async def test_the_api_token_applies(stored: Settings, tmp_path: Path) -> None:
    token = "t0ken-" + "y" * 20
    async with lms_api(stored, tmp_path, API_TOKEN=token) as c:
        assert (await c.get("/v1/logs/export", params={"format": "csv"})).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        response = await c.get("/v1/logs/export", params={"format": "csv"}, headers=auth)
        assert response.status_code == 200
        assert len(list(csv.reader(io.StringIO(response.text, newline="")))) == 361


def _lms(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [LMS, "logs", *args],
        env=child_environment(settings, {}),
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("form", ["csv", "ndjson"])
async def test_lms_logs_export_writes_the_same_bytes(
    client: httpx.AsyncClient, stored: Settings, form: str
) -> None:
    filters = ["--service", "api", "--severity", "error", "--severity", "info"]
    result = await asyncio.to_thread(_lms, stored, "--export", form, *filters)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    params = {"service": "api", "severity": ["error", "info"], "format": form}
    over_http = await client.get("/v1/logs/export", params=params)
    assert result.stdout == over_http.content
    assert len(result.stdout.decode().splitlines()) > 40


@pytest.mark.parametrize(
    "args",
    [
        ["--export", "xml"],
        ["--export", "csv", "--limit", "5"],
        ["--export", "csv", "--cursor", "abc"],
        ["--export", "csv", "--json"],
        ["--export", "csv", "-q", "to"],
    ],
)
def test_lms_logs_export_bad_arguments_exit_2(stored: Settings, args: list[str]) -> None:
    result = _lms(stored, *args)
    assert result.returncode == 2, result
    assert result.stderr.strip()
    assert result.stdout == b""


# --- 100,000 rows --------------------------------------------------------------------------

BIG = 100_000


@pytest.fixture(scope="module")
def big() -> Iterator[Settings]:
    with _database() as name:
        bulk_load(name, BIG)
        yield query_settings(name)


def _api_process(client: httpx.AsyncClient) -> psutil.Process:
    """The `lms api` child serving `client` (lms_api starts one, without workers)."""
    port = str(client.base_url.port)
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = child.cmdline()
            if "api" in command and port in command:
                return child
    raise AssertionError("no lms api child found")


async def _stream(client: httpx.AsyncClient, params: dict[str, str]) -> tuple[int, int]:
    """Lines and bytes of an export, read as they come and thrown away."""
    lines = size = 0
    async with client.stream("GET", "/v1/logs/export", params=params) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    return lines, size


async def test_100k_rows_export_in_flat_memory(big: Settings, tmp_path: Path) -> None:
    """The process's resident memory during the export stays within a few MB of what it was
    after a small one: by design it holds one page (1,000 rows, ~0.4 MB of NDJSON) at a time,
    while the export is ~35 MB, and its rows as Python objects several times that."""
    async with lms_api(big, tmp_path) as client:
        process = _api_process(client)
        await _stream(client, {"format": "ndjson", "severity": "fatal"})  # warm-up: pool, csv
        baseline = process.memory_info().rss
        peak = baseline
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, process.memory_info().rss)
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            lines, size = await _stream(client, {"format": "ndjson"})
        finally:
            done.set()
            await sampler
        csv_lines, _ = await _stream(client, {"format": "csv"})
    assert lines == BIG
    assert csv_lines == BIG + 1
    assert size > 30 * 2**20
    growth = peak - baseline
    print(
        f"export of {size / 2**20:.0f} MiB: RSS {baseline / 2**20:.0f} MiB + {growth / 2**20:.1f}"
    )
    assert growth < 16 * 2**20, (
        f"RSS grew {growth / 2**20:.1f} MiB exporting {size / 2**20:.0f} MiB"
    )


async def test_a_failure_midway_truncates_the_transfer(big: Settings, tmp_path: Path) -> None:
    """The table vanishes after the first page: the client must see a broken transfer (no
    final chunk), not a short body that looks complete."""
    database = big.mysql_database
    renamed = False
    try:
        async with lms_api(big, tmp_path) as client:
            received = 0
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream(
                    "GET", "/v1/logs/export", params={"format": "csv"}
                ) as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_bytes():
                        if not renamed:
                            _admin(f"RENAME TABLE `{database}`.service_logs TO `{database}`.gone")
                            renamed = True
                        received += len(chunk)
        assert 0 < received < 20 * 2**20
    finally:
        if renamed:
            _admin(f"RENAME TABLE `{database}`.gone TO `{database}`.service_logs")


def test_lms_logs_export_into_a_closed_pipe_ends_quietly(stored: Settings) -> None:
    """`lms logs --export ndjson | head -1`: the reader leaving is no error."""
    proc = subprocess.Popen(
        [LMS, "logs", "--export", "ndjson"],
        env=child_environment(stored, {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["id"]
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def test_lms_logs_export_failing_midway_exits_1(big: Settings) -> None:
    """The table vanishes after the first page: the output is cut short, and the exit
    status and stderr say so."""
    database = big.mysql_database
    proc = subprocess.Popen(
        [LMS, "logs", "--export", "csv"],
        env=child_environment(big, {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == (",".join(CSV_COLUMNS) + "\r\n").encode()
    assert proc.stdout.readline()  # the first page is being written: a pipe holds less
    _admin(f"RENAME TABLE `{database}`.service_logs TO `{database}`.gone")
    try:
        rest = proc.stdout.read()
        assert proc.wait(timeout=60) == 1
    finally:
        _admin(f"RENAME TABLE `{database}`.gone TO `{database}`.service_logs")
    assert 0 < rest.count(b"\r\n") < BIG
    assert b"export incomplete" in proc.stderr.read()
