"""The query API (`lms api`) and `lms logs`/`lms stats` against a real MariaDB.

A few hundred logs are stored once per module through the real write path (parse_message and
Storage.write_batch), then every filter, their combinations, pagination, full-text search,
time range edges, auth and invalid input are checked against a Python oracle of the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis import checks
from schemathesis.python.asgi import get_client

from lms.api.app import create_app
from lms.devtools.monitor_process import child_environment
from lms.domain.record import LogRecord, Rules, parse_message
from lms.query.cursor import Cursor
from lms.query.filters import LogQuery
from lms.query.reader import LogReader
from lms.settings import Settings, load_settings
from lms.store.migrations import MIGRATIONS, Migrator
from lms.store.writer import BatchWriter, StoredLog
from tests.conftest import mysql_config
from tests.lms_process import lms_api

pytestmark = pytest.mark.integration

LMS = str(Path(sys.executable).with_name("lms"))
BASE = datetime(2024, 5, 1, 12, 0, 0)
SERVICES = ("api", "billing", "worker")
TOKEN = "s3cret-" + "x" * 20
PAYLOADS = (
    "Failed to connect to database primary after {n} attempts",
    "cannot connect to cache: lookup failed, retry {n}",
    "request {n} served in {ms} ms",
    "user {n} logged in from mobile",
    "payment declined for order {n}",
    "Failed: to connect again, giving up on shard {n}",
    "disk usage at {ms} percent on volume {n}",
    # Longer than short_payload (sql/004): the probe reads these rows to test their words.
    "worker {n} stopped: " + "in frame 0x1f of the scheduler, " * 9 + "Failed to connect to queue",
    "trace {n}: " + "payment service frame; " * 12,
)


# --- the seeded database -------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    message_id: str
    record: LogRecord
    parent: str | None
    id: int = 0

    def key(self) -> tuple[datetime, int]:
        return (self.record.timestamp, self.id)


def _bodies() -> list[tuple[str, dict[str, Any]]]:
    """~420 messages; groups of three share one timestamp, to exercise the id tie-break."""
    rng = random.Random(6)
    out = []
    for i in range(420):
        stamp = BASE + timedelta(seconds=7 * (i // 3), microseconds=(i // 3) % 1000)
        body: dict[str, Any] = {
            "payload": rng.choice(PAYLOADS).format(n=i, ms=rng.randint(1, 999)),
            "timestamp": stamp.replace(tzinfo=UTC).isoformat(),
        }
        severity = rng.choices(["debug", "info", "warn", "error", "fatal"], [3, 5, 2, 2, 1])[0]
        if i % 4 == 0:
            body["level"] = severity.upper()  # the alternative spelling
            body["message"] = body.pop("payload")
        else:
            body["severity"] = severity
        service = rng.choice(SERVICES)
        resource = rng.choice([None, "vm-1", "vm-2", "vm-3"])
        if resource is None or i % 5:
            body["service_name"] = service
        if resource is not None:
            body["resourceId" if i % 2 else "resource_id"] = resource
        if i % 10 < 7:
            body["traceId" if i % 3 else "trace_id"] = f"trace-{i // 10}"
            body["span_id"] = f"span-{i}"
        commit = rng.choice([None, "c0ffee1", "deadbee"])
        if commit:
            body["commit"] = commit
        if i % 5 < 3:
            parent = rng.choice(["cluster-a", "cluster-b", 7, None])
            body["metadata"] = {"parentResourceId": parent, "zone": rng.choice("xyz"), "i": i}
        out.append((f"msg-{i:04d}", body))
    return out


# The seeded database's name is fixed at import: the fuzzed app below is built at import.
SEEDED_DB = f"lms_test_{secrets.token_hex(6)}"


def _create_database(name: str) -> str:
    _admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    return name


def _admin(sql: str, args: Sequence[object] | None = None) -> None:
    conn = pymysql.connect(**mysql_config(), charset="utf8mb4", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
    finally:
        conn.close()


def _settings(database: str, **overrides: object) -> Settings:
    config = mysql_config()
    values: dict[str, object] = {
        "_env_file": None,
        "mysql_host": config["host"],
        "mysql_port": config["port"],
        "mysql_user": config["user"],
        "mysql_password": config["password"],
        "mysql_database": database,
        # In-process clients call made-up hosts (http://lms, schemathesis' testserver); the
        # Host check has its own tests (tests/test_api_access.py).
        "api_allowed_hosts": "*",
        "api_ingest": False,  # ingestion (and its Pub/Sub publisher) is test_ingest_native's
    }
    return load_settings(**{**values, **overrides})


SEED_RULES = Rules(clock=lambda: datetime(9999, 12, 31, tzinfo=UTC).timestamp())
"""Seeds may lie in the future (logs arriving "later" than all others): no grace applies."""


async def _store(settings: Settings, bodies: Sequence[tuple[str, dict[str, Any]]]) -> None:
    storage = BatchWriter(settings)
    try:
        await Migrator(settings).migrate()
        logs = []
        for message_id, body in bodies:
            record = parse_message(json.dumps(body).encode(), SEED_RULES)
            assert isinstance(record, LogRecord), (body, record)
            logs.append(StoredLog(message_id, record))
        for start in range(0, len(logs), 100):
            await storage.write_batch(logs[start : start + 100], [])
    finally:
        await storage.close()


@dataclass
class Seeded:
    settings: Settings
    rows: list[Row]

    def expect(self, **filters: Any) -> list[str]:
        """The oracle: message ids matching `filters`, newest first."""
        severities = filters.get("severity") or []
        if isinstance(severities, str):
            severities = [severities]
        since = _parse(filters["from"]) if "from" in filters else None
        until = _parse(filters["to"]) if "to" in filters else None
        out = []
        for row in self.rows:
            r = row.record
            checks = [
                filters.get("service") in (None, r.service_name),
                not severities or r.severity in severities,
                since is None or r.timestamp >= since,
                until is None or r.timestamp < until,
                filters.get("resource_id") in (None, r.resource_id),
                filters.get("trace_id") in (None, r.trace_id),
                filters.get("span_id") in (None, r.span_id),
                filters.get("commit") in (None, r.commit),
                filters.get("parent_resource_id") in (None, row.parent),
                "q" not in filters or _text_matches(filters["q"], r.payload),
            ]
            if all(checks):
                out.append(row)
        return [row.message_id for row in sorted(out, key=Row.key, reverse=True)]


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _text_matches(q: str, payload: str) -> bool:
    """What InnoDB boolean mode does with our queries: words required, phrases contiguous."""
    words = _tokens(payload)
    for index, part in enumerate(q.split('"')):
        if index % 2:
            phrase = _tokens(part)
            if phrase and not any(words[i : i + len(phrase)] == phrase for i in range(len(words))):
                return False
        elif not all(w in words for w in _tokens(part) if len(w) >= 3 and w not in {"to"}):
            return False
    return True


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    name = _create_database(SEEDED_DB)
    try:
        settings = _settings(name)
        bodies = _bodies()
        asyncio.run(_store(settings, bodies))
        conn = pymysql.connect(**mysql_config(), database=name)
        with conn.cursor() as cur:
            cur.execute("SELECT message_id, id FROM service_logs")
            ids = dict(cur.fetchall())
        conn.close()
        rows = []
        for message_id, body in bodies:
            record = parse_message(json.dumps(body).encode(), SEED_RULES)
            assert isinstance(record, LogRecord)
            parent = (body.get("metadata") or {}).get("parentResourceId")
            rows.append(
                Row(
                    message_id, record, parent if isinstance(parent, str) else None, ids[message_id]
                )
            )
        yield Seeded(settings, rows)
    finally:
        _admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
async def client(seeded: Seeded) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(seeded.settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        yield c


async def all_pages(
    client: httpx.AsyncClient, params: dict[str, Any], limit: int = 37
) -> list[str]:
    """Every message id the API returns for `params`, following next_cursor to the end."""
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/logs", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["logs"]) <= limit
        seen.extend(log["message_id"] for log in body["logs"])
        cursor = body["next_cursor"]
        if cursor is None:
            assert len(seen) == len(set(seen)), "a log was returned twice"
            return seen
        assert len(body["logs"]) == limit, "only the last page may be short"
    raise AssertionError("pagination did not end")


# --- every filter and combinations ---------------------------------------------------------

T1 = (BASE + timedelta(seconds=7 * 30)).strftime("%Y-%m-%dT%H:%M:%SZ")
T2 = (BASE + timedelta(seconds=7 * 90)).strftime("%Y-%m-%dT%H:%M:%SZ")

FILTERS: list[dict[str, Any]] = [
    {},
    {"service": "api"},
    {"service": "vm-2"},  # a service named after its resource (service_name fell back)
    {"service": "nope"},
    {"severity": "error"},
    {"severity": ["error", "fatal"]},
    {"severity": ["debug", "info", "warn", "error", "fatal"]},
    {"from": T1},
    {"to": T1},
    {"from": T1, "to": T2},
    {"resource_id": "vm-1"},
    {"trace_id": "trace-7"},
    {"span_id": "span-31"},
    {"commit": "deadbee"},
    {"parent_resource_id": "cluster-a"},
    {"parent_resource_id": "7"},  # a number is not a parentResourceId: matches nothing
    {"q": "payment"},
    {"q": "declined order"},
    {"q": '"failed to connect"'},
    {"q": '"to connect again"'},
    {"q": "FAILED"},
    {"service": "api", "severity": "error"},
    {"service": "billing", "severity": ["warn", "fatal"], "from": T1, "to": T2},
    {"service": "worker", "from": T1},
    {"severity": ["info", "debug"], "to": T2},
    {"resource_id": "vm-3", "severity": ["error", "fatal"]},
    {"resource_id": "vm-1", "service": "api", "from": T1},
    {"trace_id": "trace-3", "service": "billing"},
    {"trace_id": "trace-3", "span_id": "span-31"},
    {"commit": "c0ffee1", "parent_resource_id": "cluster-b"},
    {"commit": "c0ffee1", "severity": "info", "to": T2},
    {"parent_resource_id": "cluster-a", "service": "worker", "severity": ["warn", "error"]},
    {"q": "payment", "service": "api"},
    {"q": '"failed to connect"', "severity": ["error", "fatal"], "from": T1},
    {"q": "request served", "resource_id": "vm-2", "commit": "deadbee"},
    {"q": "cache", "trace_id": "trace-20"},
    {
        "service": "api",
        "severity": ["debug", "info", "error"],
        "from": T1,
        "to": T2,
        "commit": "c0ffee1",
        "parent_resource_id": "cluster-a",
        "q": "Failed",
    },
]


@pytest.mark.parametrize("filters", FILTERS, ids=[json.dumps(f) for f in FILTERS])
async def test_filters_match_the_oracle(
    client: httpx.AsyncClient, seeded: Seeded, filters: dict[str, Any]
) -> None:
    expected = seeded.expect(**filters)
    assert await all_pages(client, filters) == expected


SEARCHES = [f for f in FILTERS if "q" in f]


PROBE_MODES = {"fulltext-index": None, "probe-cut-early": 1, "probe-cut-later": 60}


@contextlib.asynccontextmanager
async def probed_client(
    seeded: Seeded, mode: str
) -> AsyncIterator[tuple[httpx.AsyncClient, LogReader]]:
    """The API with the probe off (only the FULLTEXT index) or so short that it is cut, and
    its reader, whose `strategies` count the paths its searches took."""
    reader = LogReader(seeded.settings)
    reader.probe_depth = PROBE_MODES[mode]
    app = create_app(seeded.settings, reader)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        yield c, reader


@pytest.fixture(params=list(PROBE_MODES))
async def search_client(
    seeded: Seeded, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    async with probed_client(seeded, request.param) as (client, _reader):
        yield client


@pytest.mark.parametrize("filters", SEARCHES, ids=[json.dumps(f) for f in SEARCHES])
@pytest.mark.parametrize("limit", [5, 37])
async def test_every_search_strategy_gives_the_same_answer(
    search_client: httpx.AsyncClient, seeded: Seeded, filters: dict[str, Any], limit: int
) -> None:
    # Default client: the probe reads everything (420 rows < PROBE_DEPTH), exact at once.
    # Here: the FULLTEXT index alone, and a probe cut after limit + 1 rows per stream, which
    # answers common words itself and hands rarer ones to the FULLTEXT index.
    assert await all_pages(search_client, filters, limit=limit) == seeded.expect(**filters)


async def test_every_search_strategy_was_used(seeded: Seeded) -> None:
    """Each mode takes the paths it is there to test, over the searches of the test above
    (run here again, whatever ran before: on any worker, alone or in any order)."""
    strategies: dict[str, Counter[str]] = {}
    for mode in PROBE_MODES:
        async with probed_client(seeded, mode) as (client, reader):
            for filters in SEARCHES:
                for limit in (5, 37):
                    assert await all_pages(client, filters, limit=limit) == seeded.expect(**filters)
        strategies[mode] = reader.strategies
    assert all(strategies.values()), strategies
    assert set(strategies["fulltext-index"]) == {"fulltext", "scan"}
    assert strategies["probe-cut-early"]["fulltext"] > 0
    assert strategies["probe-cut-later"]["probe"] > 0
    assert strategies["probe-cut-later"]["fulltext"] > 0


def test_the_filter_matrix_is_not_trivial(seeded: Seeded) -> None:
    sizes = {json.dumps(f): len(seeded.expect(**f)) for f in FILTERS}
    nonempty = [k for k, n in sizes.items() if n]
    assert len(nonempty) >= len(FILTERS) - 3, sizes
    assert sizes["{}"] == 420
    assert 1 <= sizes[json.dumps({"q": '"failed to connect"'})] < 420


async def test_log_fields_and_format(client: httpx.AsyncClient, seeded: Seeded) -> None:
    response = await client.get("/v1/logs", params={"span_id": "span-31"})
    [log] = response.json()["logs"]
    row = next(r for r in seeded.rows if r.record.span_id == "span-31")
    r = row.record
    assert log == {
        "id": row.id,
        "message_id": row.message_id,
        "timestamp": r.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "service_name": r.service_name,
        "severity": r.severity,
        "payload": r.payload,
        "resource_id": r.resource_id,
        "trace_id": r.trace_id,
        "span_id": "span-31",
        "commit": r.commit,
        "metadata": json.loads(r.metadata) if r.metadata else None,
    }
    assert response.headers["content-type"] == "application/json"


async def test_one_log_by_its_id(client: httpx.AsyncClient, seeded: Seeded) -> None:
    """GET /v1/logs/{id} (the web UI's permalinks) is the same item GET /v1/logs gives, 404
    for an id no log has, 422 for one no log can have; /v1/logs/export is not an id."""
    page = (await client.get("/v1/logs", params={"limit": 5})).json()["logs"]
    for log in page:
        response = await client.get(f"/v1/logs/{log['id']}")
        assert response.status_code == 200
        assert response.json() == log
    missing = max(row.id for row in seeded.rows) + 1000
    response = await client.get(f"/v1/logs/{missing}")
    assert response.status_code == 404
    assert str(missing) in response.json()["detail"]
    assert (await client.get("/v1/logs/0")).status_code == 422
    assert (await client.get("/v1/logs/export", params={"format": "ndjson"})).status_code == 200


async def test_default_limit_is_100(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/logs")).json()
    assert len(body["logs"]) == 100
    assert body["next_cursor"]
    assert len((await client.get("/v1/logs", params={"limit": 1000})).json()["logs"]) == 420


# --- pagination ----------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 7, 419, 420, 421])
async def test_pagination_has_no_gaps_or_repeats(
    client: httpx.AsyncClient, seeded: Seeded, limit: int
) -> None:
    assert await all_pages(client, {}, limit=limit) == seeded.expect()


async def test_pagination_with_ties_and_filters(client: httpx.AsyncClient, seeded: Seeded) -> None:
    # Groups of three logs share a timestamp: a page boundary inside a group must not skip.
    for filters in ({"severity": ["info", "error"]}, {"service": "api"}, {"q": "failed"}):
        assert await all_pages(client, filters, limit=2) == seeded.expect(**filters)


async def test_last_page_has_null_cursor(client: httpx.AsyncClient, seeded: Seeded) -> None:
    expected = seeded.expect(trace_id="trace-7")
    body = (
        await client.get("/v1/logs", params={"trace_id": "trace-7", "limit": len(expected)})
    ).json()
    assert [log["message_id"] for log in body["logs"]] == expected
    assert body["next_cursor"] is None


async def test_pages_do_not_repeat_while_logs_arrive(mysql_database: str) -> None:
    settings = _settings(mysql_database)
    await _store(settings, _bodies()[:60])
    async with LogReader(settings) as reader:
        first = await reader.logs(LogQuery(limit=25))
        # Newer logs arrive, plus older ones (a late batch) below the cursor.
        late = [
            (f"late-{i}", {**body, "timestamp": ts})
            for i, (ts, (_, body)) in enumerate(
                zip(
                    ["2030-01-01T00:00:00Z"] * 5 + ["2000-01-01T00:00:00Z"] * 3,
                    _bodies()[60:68],
                    strict=True,
                )
            )
        ]
        await _store(settings, late)
        seen = [e.message_id for e in first.logs]
        cursor = first.next_cursor
        while cursor:
            page = await reader.logs(LogQuery(limit=25, cursor=Cursor.decode(cursor)))
            seen += [e.message_id for e in page.logs]
            cursor = page.next_cursor
    assert len(seen) == len(set(seen))
    assert {f"msg-{i:04d}" for i in range(60)} <= set(seen)
    assert {f"late-{i}" for i in range(5, 8)} <= set(seen)  # older than the cursor: seen
    assert not {f"late-{i}" for i in range(5)} & set(seen)  # newer: on a fresh first page


# --- full-text -----------------------------------------------------------------------------


async def test_phrase_search_matches_only_the_phrase(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    phrase = await all_pages(client, {"q": '"Failed to connect"'})
    words = await all_pages(client, {"q": "failed connect"})
    payloads = {r.message_id: r.record.payload for r in seeded.rows}
    assert phrase and set(phrase) < set(words)
    for message_id in phrase:
        assert re.search(r"failed\W+to\W+connect", payloads[message_id], re.IGNORECASE)
    # "cannot connect to cache: lookup failed" has both words but not the phrase
    assert any("lookup failed" in payloads[m] for m in set(words) - set(phrase))


@pytest.mark.parametrize(
    "q",
    [
        "payment -declined",
        "+payment",
        "payment*",
        "(payment)",
        '"payment',
        "payment' OR 1=1 --",
        "payment\\",
        "payment @1",
        "<payment> ~order",
    ],
)
async def test_boolean_operators_in_q_are_plain_text(
    client: httpx.AsyncClient, seeded: Seeded, q: str
) -> None:
    response = await client.get("/v1/logs", params={"q": q, "limit": 1000})
    assert response.status_code == 200, response.text
    got = {log["message_id"] for log in response.json()["logs"]}
    assert got
    assert all("payment" in seeded.rows[int(m[4:])].record.payload for m in got)


async def test_q_of_only_stopwords_is_a_clear_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/logs", params={"q": "to the"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "q"]
    assert "no searchable word" in error["msg"]


# --- time range edges ----------------------------------------------------------------------


async def test_from_is_inclusive_and_to_exclusive(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    moment = seeded.rows[150].record.timestamp  # shared by rows 150..152
    group = {f"msg-{i:04d}" for i in (150, 151, 152)}
    at = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    just_after = (moment + timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert set(await all_pages(client, {"from": at, "to": just_after})) == group
    assert group <= set(await all_pages(client, {"from": at}))
    assert not group & set(await all_pages(client, {"to": at}))
    assert group <= set(await all_pages(client, {"to": just_after}))
    # Same instant written with another offset.
    local = (moment.replace(tzinfo=UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f+02:00")
    assert set(await all_pages(client, {"from": local, "to": just_after})) == group


async def test_a_range_with_nothing_in_it(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/logs", params={"from": "2030-01-01T00:00:00Z"})).json()
    assert body == {"logs": [], "next_cursor": None}


# --- invalid input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("/v1/logs", {"bogus": "1"}, "bogus"),
        ("/v1/logs", {"from_": "2024-01-01T00:00:00Z"}, "from_"),
        ("/v1/logs", {"limit": "0"}, "limit"),
        ("/v1/logs", {"limit": "1001"}, "limit"),
        ("/v1/logs", {"limit": "ten"}, "limit"),
        ("/v1/logs", {"severity": "warning"}, "severity"),
        ("/v1/logs", {"from": "2024-01-01T00:00:00"}, "from"),  # no offset
        ("/v1/logs", {"from": "yesterday"}, "from"),
        ("/v1/logs", {"to": "1714564800"}, "to"),
        ("/v1/logs", {"from": "2024-02-30T00:00:00Z"}, "from"),
        ("/v1/logs", {"from": T2, "to": T1}, "to"),
        ("/v1/logs", {"from": T1, "to": T1}, "to"),
        ("/v1/logs", {"cursor": "not-a-cursor"}, "cursor"),
        ("/v1/logs", {"q": "x" * 513}, "q"),
        ("/v1/logs", {"q": ""}, "q"),
        ("/v1/logs", {"service": "s" * 101}, "service"),
        ("/v1/logs", {"trace_id": "t" * 256}, "trace_id"),
        ("/v1/logs", {"service": "api "}, "service"),  # PAD SPACE would match `api`
        ("/v1/logs", {"service": " api"}, "service"),
        ("/v1/logs", {"service": "a\x1bpi"}, "service"),
        ("/v1/logs", {"trace_id": "t "}, "trace_id"),
        ("/v1/logs", {"commit": "c\x00"}, "commit"),
        ("/v1/logs", {"parent_resource_id": "p\t"}, "parent_resource_id"),
        ("/v1/severity", {"service": "api "}, "service"),
        ("/v1/services", {"service": "api"}, "service"),
        ("/v1/severity", {"bucket": "week"}, "bucket"),
        ("/v1/severity", {"bucket": "minute", "from": "2020-01-01T00:00:00Z"}, "from"),
        ("/v1/consistency", {"x": "1"}, "x"),
        ("/healthz", {"x": "1"}, "x"),
    ],
)
async def test_invalid_input_is_a_clear_422(
    client: httpx.AsyncClient, path: str, params: dict[str, str], loc: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(error["loc"][:2] == ["query", loc] for error in detail), detail
    assert all(error["msg"] for error in detail)


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/nothing")).status_code == 404


# --- aggregates ----------------------------------------------------------------------------


async def test_services(client: httpx.AsyncClient, seeded: Seeded) -> None:
    body = (await client.get("/v1/services")).json()
    expected: dict[str, dict[str, int]] = {}
    for row in seeded.rows:
        counts = expected.setdefault(
            row.record.service_name, dict.fromkeys(["debug", "info", "warn", "error", "fatal"], 0)
        )
        counts[row.record.severity] += 1
    assert {s["service_name"]: s["severity"] for s in body["services"]} == expected
    assert all(s["total"] == sum(s["severity"].values()) for s in body["services"])
    assert [s["service_name"] for s in body["services"]] == sorted(expected)


async def test_severity_buckets(client: httpx.AsyncClient, seeded: Seeded) -> None:
    # The seed committed all batches moments ago: every count is in the current buckets.
    for bucket in ("minute", "hour", "day"):
        body = (await client.get("/v1/severity", params={"bucket": bucket})).json()
        assert body["bucket"] == bucket
        total = sum(b["count"] for b in body["buckets"])
        assert total == len(seeded.rows)
        for b in body["buckets"]:
            assert b["start"].endswith("Z")
    api = (await client.get("/v1/severity", params={"bucket": "day", "service": "api"})).json()
    assert {b["service_name"] for b in api["buckets"]} == {"api"}
    assert sum(b["count"] for b in api["buckets"]) == len(seeded.expect(service="api"))
    old = await client.get(
        "/v1/severity", params={"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}
    )
    assert old.json()["buckets"] == []


async def test_severity_bucket_boundaries(mysql_database: str) -> None:
    settings = _settings(mysql_database)
    await Migrator(settings).migrate()
    rows = [
        ("api", "error", 2, "2024-05-01 10:59:59.999999"),
        ("api", "error", 3, "2024-05-01 11:00:00"),
        ("api", "info", 5, "2024-05-01 11:30:00"),
        ("web", "info", 7, "2024-05-01 12:00:00"),
    ]
    for row in rows:
        _admin(
            f"INSERT INTO `{mysql_database}`.service_severity"
            " (service_name, severity, `count`, created_at) VALUES (%s, %s, %s, %s)",
            row,
        )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
    ):
        params = {"bucket": "hour", "from": "2024-05-01T11:00:00Z", "to": "2024-05-01T12:00:00Z"}
        body = (await c.get("/v1/severity", params=params)).json()
    # [from, to): 10:59:59.999999 and 12:00:00 are out; severities in level order.
    assert body["buckets"] == [
        {"start": "2024-05-01T11:00:00.000000Z", "service_name": "api", "severity": "info",
         "count": 5},
        {"start": "2024-05-01T11:00:00.000000Z", "service_name": "api", "severity": "error",
         "count": 3},
    ]  # fmt: skip


async def test_consistency_agrees_and_spots_a_mismatch(mysql_database: str) -> None:
    settings = _settings(mysql_database)
    await _store(settings, _bodies()[:40])
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
    ):
        body = (await c.get("/v1/consistency")).json()
        assert body["consistent"] is True
        assert sum(p["logs"] for p in body["pairs"]) == 40
        assert all(p["agree"] and p["logs"] == p["severity_total"] for p in body["pairs"])
        _admin(
            f"INSERT INTO `{mysql_database}`.service_severity"
            " (service_name, severity, `count`) VALUES ('ghost', 'fatal', 2)"
        )
        body = (await c.get("/v1/consistency")).json()
    assert body["consistent"] is False
    [ghost] = [p for p in body["pairs"] if not p["agree"]]
    assert ghost == {
        "service_name": "ghost",
        "severity": "fatal",
        "logs": 0,
        "severity_total": 2,
        "agree": False,
    }


# --- auth ----------------------------------------------------------------------------------


@pytest.fixture
async def secured(seeded: Seeded) -> AsyncIterator[httpx.AsyncClient]:
    settings = seeded.settings.model_copy(update={"api_token": _secret(TOKEN)})
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        yield c


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


PATHS = [
    "/v1/logs",
    "/v1/services",
    "/v1/severity",
    "/v1/consistency",
    "/v1/users/7/requests",
    "/v1/analytics/patterns",
    "/readyz",
]


@pytest.mark.parametrize("path", [*PATHS, "/metrics", "/openapi.json", "/docs", "/v1/nothing"])
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
     "Bearer wrong", f"Bearer{TOKEN}"],
)  # fmt: skip
async def test_token_is_required(
    secured: httpx.AsyncClient, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await secured.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "token" in response.json()["detail"]


@pytest.mark.parametrize("path", [*PATHS, "/metrics", "/openapi.json"])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
async def test_right_token_is_accepted(secured: httpx.AsyncClient, path: str, scheme: str) -> None:
    response = await secured.get(path, headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200, response.text


async def test_healthz_never_needs_the_token(secured: httpx.AsyncClient) -> None:
    assert (await secured.get("/healthz")).json() == {"status": "ok"}


async def test_without_token_setting_no_auth_is_needed(client: httpx.AsyncClient) -> None:
    for path in [*PATHS, "/openapi.json", "/healthz"]:
        assert (await client.get(path)).status_code == 200, path
    schema = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in schema.get("components", {})


async def test_openapi_documents_the_bearer_scheme(secured: httpx.AsyncClient) -> None:
    schema = (
        await secured.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    ).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/logs"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


# --- database trouble ----------------------------------------------------------------------


async def test_database_down_is_503_not_a_crash() -> None:
    settings = _settings("lms", mysql_port=1, db_timeout=2)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
    ):
        for path in PATHS:
            response = await c.get(path)
            assert response.status_code == 503, (path, response.text)
            assert "connect" in response.json()["detail"]
        assert (await c.get("/healthz")).status_code == 200


async def test_unmigrated_database_is_503_naming_migrate(mysql_database: str) -> None:
    app = create_app(_settings(mysql_database))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
    ):
        response = await c.get("/v1/logs")
    assert response.status_code == 503
    assert "lms migrate" in response.json()["detail"]


# --- migration and a read-only user --------------------------------------------------------


async def test_migration_keeps_existing_rows(
    mysql_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at version 1 with rows gets the later versions without losing any row."""
    settings = _settings(mysql_database)
    only_first = tmp_path / "sql"
    only_first.mkdir()
    (only_first / "001_initial.sql").write_text((MIGRATIONS / "001_initial.sql").read_text())
    assert await Migrator(settings, only_first).migrate() == ["001_initial.sql"]
    db = f"`{mysql_database}`"
    _admin(
        f"INSERT INTO {db}.service_logs"
        " (message_id, batch_id, service_name, payload, severity, `timestamp`) VALUES"
        " ('old-1', 1, 'legacy', 'Failed to connect to the old db', 'error',"
        "  '2023-01-01 00:00:00'),"
        " ('old-2', 1, 'legacy', 'all good', 'info', '2023-01-01 00:00:01')"
    )
    _admin(
        f"INSERT INTO {db}.service_severity (service_name, severity, `count`) VALUES"
        " ('legacy', 'error', 1), ('legacy', 'info', 1)"
    )
    assert await Migrator(settings).migrate() == [
        "002_log_context.sql",
        "003_service_in_filter_indexes.sql",
        "004_short_payload_in_indexes.sql",
        "005_idempotency_key.sql",
        "006_rejected_digest.sql",
        "008_user_requests.sql",
        "009_patterns.sql",
        "010_volume_rollup.sql",
        "011_request_rollup.sql",
        "012_retention.sql",
        "013_pattern_rollups.sql",
        "014_request_users_all.sql",
        "015_commit_rollup.sql",
    ]
    assert await Migrator(settings).migrate() == []  # idempotent
    async with LogReader(settings) as reader:
        page = await reader.logs(LogQuery())
        assert [e.message_id for e in page.logs] == ["old-2", "old-1"]
        assert all(e.trace_id is None and e.metadata is None for e in page.logs)
        found = await reader.logs(LogQuery(q='"failed to connect"'))
        assert [e.message_id for e in found.logs] == ["old-1"]
        assert (await reader.consistency()).consistent
    # ...and new rows with context land next to them.
    await _store(settings, _bodies()[:10])
    async with LogReader(settings) as reader:
        assert len((await reader.logs(LogQuery())).logs) == 12


async def test_read_only_user_is_enough(seeded: Seeded) -> None:
    user = f"lms_ro_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    database = seeded.settings.mysql_database
    _admin(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
    try:
        _admin(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'")
        settings = seeded.settings.model_copy(
            update={"mysql_user": user, "mysql_password": password}
        )
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c,
        ):
            for path in PATHS:
                assert (await c.get(path)).status_code == 200, path
            assert len((await c.get("/v1/logs", params={"q": "payment"})).json()["logs"]) > 0
    finally:
        _admin(f"DROP USER IF EXISTS '{user}'@'%'")


async def test_reader_sessions_are_read_only(seeded: Seeded) -> None:
    async with LogReader(seeded.settings) as reader, reader._cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError):
            await cur.execute("DELETE FROM service_logs")
    async with LogReader(seeded.settings) as reader:
        assert len((await reader.logs(LogQuery(limit=1000))).logs) == 420


# --- schemathesis --------------------------------------------------------------------------


# The app only connects on its first query, so it can be built before the seed exists.
# (schemathesis.pytest.from_fixture would be neater, but fails on pytest 9: no Node._nodeid.)
fuzzed_app = create_app(_settings(SEEDED_DB))
schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)


@pytest.fixture(scope="module")
def asgi_client(seeded: Seeded) -> Iterator[Any]:
    """One client (one event loop, one pool) for all fuzz cases, on the seeded database."""
    with get_client(fuzzed_app) as test_client:
        yield test_client


@schema.parametrize()
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
def test_openapi_fuzz(case: Any, asgi_client: Any) -> None:
    """Schema conformance of every response, no 5xx, 422 for schema-invalid input, 405 for
    other methods, 404 only for a log id that no log has. Schema-valid input may still get
    422 for rules OpenAPI cannot express (to after from, at most 10,000 buckets, a q with a
    searchable word, a real cursor), so the positive-data-acceptance check is left out and
    422 bodies are checked instead."""
    response = case.call(session=asgi_client)
    case.validate_response(response, excluded_checks=[checks.positive_data_acceptance])
    # An id no log has is a documented 404 of GET /v1/logs/{log_id}.
    by_id = (404,) if case.operation.path == "/v1/logs/{log_id}" else ()
    assert response.status_code in (200, 405, 422, *by_id), response.text
    if response.status_code == 422:
        assert all(error["msg"] for error in response.json()["detail"])


# --- `lms api` for real, `lms logs`, `lms stats` -------------------------------------------


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return child_environment(settings, extra)


async def test_lms_api_serves_on_a_port(seeded: Seeded, tmp_path: Path) -> None:
    async with lms_api(seeded.settings, tmp_path, API_TOKEN=TOKEN) as c:
        assert (await c.get("/v1/logs")).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = (await c.get("/v1/logs", params={"service": "api"}, headers=auth)).json()
        assert [log["message_id"] for log in body["logs"]] == seeded.expect(service="api")[:100]
        assert (await c.get("/openapi.json", headers=auth)).json()["info"]["title"]
        assert "server" not in (await c.get("/healthz")).headers


def _lms(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LMS, *args], env=_env(settings), capture_output=True, text=True, timeout=60, check=False
    )


def test_lms_logs_json_lines(seeded: Seeded) -> None:
    result = _lms(
        seeded.settings,
        "logs", "--service", "api", "--severity", "error", "--severity", "fatal",
        "--from", T1, "--to", T2, "--limit", "1000", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    expected = seeded.expect(service="api", severity=["error", "fatal"], **{"from": T1, "to": T2})
    assert [line["message_id"] for line in lines] == expected
    assert result.stderr == ""


def test_lms_logs_reports_where_the_next_page_starts(seeded: Seeded) -> None:
    result = _lms(seeded.settings, "logs", "--json", "--limit", "5")
    assert [json.loads(x)["message_id"] for x in result.stdout.splitlines()] == seeded.expect()[:5]
    cursor = re.search(r"--cursor ([\w-]+)", result.stderr)
    assert cursor
    more = _lms(seeded.settings, "logs", "--json", "--limit", "5", "--cursor", cursor.group(1))
    assert [json.loads(x)["message_id"] for x in more.stdout.splitlines()] == seeded.expect()[5:10]


def test_lms_logs_table_with_phrase_search(seeded: Seeded) -> None:
    result = _lms(seeded.settings, "logs", "-q", '"failed to connect"', "--trace-id", "trace-12")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["TIMESTAMP", "(UTC)", "LEVEL", "SERVICE", "PAYLOAD"]
    expected = seeded.expect(q='"failed to connect"', trace_id="trace-12")
    assert len(lines) == len(expected) >= 1
    assert all("trace=trace-12" in line for line in lines)


def test_lms_logs_since_and_resource(seeded: Seeded) -> None:
    result = _lms(seeded.settings, "logs", "--since", "1h", "--resource-id", "vm-1", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the seed is from 2024


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "yesterday"],
        ["--since", "3 fortnights"],
        ["--since", "1h", "--from", "2024-01-01T00:00:00Z"],
        ["--severity", "loud"],
        ["-q", "to"],
        ["--cursor", "nope"],
        ["--limit", "0"],
        ["--service", "api "],
        ["--trace-id", "\x1b[31m"],
    ],
)
def test_lms_logs_bad_arguments_exit_2(seeded: Seeded, args: list[str]) -> None:
    result = _lms(seeded.settings, "logs", *args)
    assert result.returncode == 2, result
    assert result.stderr.strip()


def test_lms_stats(seeded: Seeded) -> None:
    result = _lms(seeded.settings, "stats")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["SERVICE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "TOTAL"]
    assert lines[-1].split()[0] == "(all)"
    assert int(lines[-1].split()[-1]) == 420
    as_json = json.loads(_lms(seeded.settings, "stats", "--json").stdout)
    assert sum(s["total"] for s in as_json["services"]) == 420


def test_lms_logs_database_down_exits_1(seeded: Seeded) -> None:
    env = {**_env(seeded.settings), "MYSQL_PORT": "1"}
    result = subprocess.run(
        [LMS, "logs"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "cannot connect" in result.stderr
