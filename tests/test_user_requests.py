"""Each user's order: metadata.user_id/instance/seq (migration 008), the user_id filter of
GET /v1/logs and `lms logs`, and GET /v1/users/{user_id}/requests, against a real MariaDB.

The logs are stored through the real write path (parse_message, BatchWriter) in shuffled
order, so that row ids say nothing about the order the requests were made in.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import secrets
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest

from lms.api.app import create_app
from lms.devtools.monitor_process import child_environment
from lms.domain.record import LogRecord, parse_message
from lms.settings import Settings
from lms.store.migrations import MIGRATIONS, Migrator, migration_files
from lms.store.writer import BatchWriter, StoredLog
from tests.conftest import mysql_config, query_settings

pytestmark = pytest.mark.integration

LMS = str(Path(sys.executable).with_name("lms"))
BASE = datetime(2024, 5, 1, 12, 0, 0)
WEB1, WEB2 = "web-1:100", "web-2:200"
USER_MIGRATION = "008_user_requests.sql"
REQUESTS = "/v1/users/{}/requests"


@dataclass(frozen=True)
class Log:
    message_id: str
    body: dict[str, Any]

    @property
    def timestamp(self) -> datetime:
        return _naive(self.body["timestamp"])


def _naive(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)


class Traffic:
    """Request logs as the middleware sends them: each instance counts its own requests."""

    def __init__(self, prefix: str = "m") -> None:
        self.seq: dict[str, int] = defaultdict(lambda: 8)  # to 10 and beyond: sorts as a number
        self.logs: list[Log] = []
        self.prefix = prefix

    def request(self, user: object, instance: str, stamp: datetime, severity: str = "info") -> Log:
        self.seq[instance] += 1
        metadata = {"user_id": user, "instance": instance, "seq": self.seq[instance]}
        return self.log(metadata, stamp, severity)

    def log(self, metadata: dict[str, Any], stamp: datetime, severity: str = "info") -> Log:
        n = len(self.logs)
        body = {
            "service_name": "shop",
            "severity": severity,
            "payload": f"GET /items/{n} {'failed to connect' if severity == 'error' else 'ok'}",
            "timestamp": stamp.replace(tzinfo=UTC).isoformat(),
            "metadata": {**metadata, "http": {"route": "/items/{id}"}},
        }
        entry = Log(f"{self.prefix}-{n:03d}", body)
        self.logs.append(entry)
        return entry


@dataclass
class World:
    settings: Settings
    logs: list[Log]
    ids: dict[str, int]
    made: dict[str, list[str]]
    """Per user, the message ids of their requests in the order they were made."""

    def newest_first(self, user: str, **match: Any) -> list[str]:
        """The oracle of GET /v1/logs?user_id=: every log of `user`, newest first."""
        chosen = [
            log
            for log in self.logs
            if str(log.body["metadata"].get("user_id")) == user
            and all(log.body[k] == v for k, v in match.items())
        ]
        chosen.sort(key=lambda log: (log.timestamp, self.ids[log.message_id]), reverse=True)
        return [log.message_id for log in chosen]


def _world() -> tuple[list[Log], dict[str, list[str]]]:
    """alice and bob use the shop at the same time through two instances; 42 is a user sent
    as an integer by one service and as a string by another."""
    t = Traffic()
    made: dict[str, list[str]] = {"alice": [], "bob": [], "42": []}
    stamp = BASE
    for k in range(20):
        # Every 4th request starts in the same microsecond as the one before it, on the
        # other instance: the instance breaks the tie (web-1 first).
        if k % 4 != 1:
            stamp += timedelta(milliseconds=7, microseconds=k)
        instance = (WEB1, WEB2)[k % 2]
        made["alice"].append(
            t.request("alice", instance, stamp, "error" if k % 5 == 0 else "info").message_id
        )
        made["bob"].append(t.request("bob", instance, stamp).message_id)
        if k % 3 == 0:
            made["42"].append(t.request(42 if k % 2 else "42", instance, stamp).message_id)
    # Two requests served by web-2 in one microsecond: only seq orders them.
    stamp += timedelta(milliseconds=3)
    made["alice"] += [t.request("alice", WEB2, stamp).message_id for _ in range(2)]
    # alice's logs that are not request logs: in GET /v1/logs?user_id=, not in her requests.
    t.log({"user_id": "alice"}, stamp - timedelta(seconds=1), "warn")
    t.log({"user_id": "alice", "seq": 3}, stamp - timedelta(milliseconds=5))
    t.log({"user_id": "alice", "instance": WEB1}, stamp + timedelta(seconds=1))
    # Odd users: an id with a slash and one beyond ASCII.
    made["team/carol"] = [t.request("team/carol", WEB1, stamp).message_id]
    made["zoë"] = [t.request("zoë", WEB2, stamp).message_id]
    return t.logs, made


def _admin(sql: str, args: Sequence[object] | None = None, database: str | None = None) -> Any:
    conn = pymysql.connect(**mysql_config(), database=database, charset="utf8mb4", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


async def _store(settings: Settings, logs: Sequence[Log]) -> None:
    writer = BatchWriter(settings)
    try:
        stored = []
        for log in logs:
            record = parse_message(json.dumps(log.body).encode())
            assert isinstance(record, LogRecord), (log, record)
            stored.append(StoredLog(log.message_id, record))
        for start in range(0, len(stored), 10):
            await writer.write_batch(stored[start : start + 10], [])
    finally:
        await writer.close()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    name = f"lms_test_{secrets.token_hex(6)}"
    _admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        settings = query_settings(name)
        logs, made = _world()
        shuffled = random.Random(15).sample(logs, len(logs))
        asyncio.run(Migrator(settings).migrate())
        asyncio.run(_store(settings, shuffled))
        ids = dict(_admin("SELECT message_id, id FROM service_logs", database=name))
        yield World(settings, logs, ids, made)
    finally:
        _admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(world.settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        yield c


async def pages(
    client: httpx.AsyncClient, path: str, key: str, limit: int, **params: Any
) -> list[list[str]]:
    """The message ids of every page of a listing, following next_cursor to its end."""
    out: list[list[str]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        out.append([log["message_id"] for log in body[key]])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
        assert len(out[-1]) == limit, "only the last page may be short"
    raise AssertionError("paging did not end")


def _flat(listing: list[list[str]]) -> list[str]:
    return [message_id for page in listing for message_id in page]


# --- GET /v1/users/{user_id}/requests ------------------------------------------------------


def test_the_world_is_not_trivial(world: World) -> None:
    """Ties the order must break are there, and row ids disagree with the order made."""
    alice = [next(log for log in world.logs if log.message_id == m) for m in world.made["alice"]]
    stamps = [log.timestamp for log in alice]
    assert len(set(stamps)) < len(stamps) - 4  # equal timestamps, across and within instances
    ids = [world.ids[m] for m in world.made["alice"]]
    assert ids != sorted(ids)
    seqs = [log.body["metadata"]["seq"] for log in alice]
    assert min(seqs) < 10 <= max(seqs)


@pytest.mark.parametrize("limit", [3, 1, 1000])
async def test_a_users_requests_come_in_the_order_they_were_made(
    client: httpx.AsyncClient, world: World, limit: int
) -> None:
    """Pages of 3 over 22 requests: none repeated, none skipped, in the order made; bob's
    requests at the same moments and alice's logs that are not requests are not there."""
    listing = await pages(client, REQUESTS.format("alice"), "requests", limit)
    assert _flat(listing) == world.made["alice"]
    assert len(listing) == -(-len(world.made["alice"]) // limit)


async def test_requests_tie_break_by_instance_then_seq(client: httpx.AsyncClient) -> None:
    body = (await client.get(REQUESTS.format("alice"), params={"limit": 1000})).json()
    keys = [
        (log["timestamp"], log["metadata"]["instance"], log["metadata"]["seq"])
        for log in body["requests"]
    ]
    assert keys == sorted(keys)
    ties = [(a, b) for a, b in itertools.pairwise(keys) if a[0] == b[0]]
    assert any(a[1] == WEB1 and b[1] == WEB2 for a, b in ties)  # across instances
    assert any(a[1] == b[1] == WEB2 and a[2] < b[2] for a, b in ties)  # within one


async def test_each_request_is_in_the_shape_of_get_v1_logs(
    client: httpx.AsyncClient, world: World
) -> None:
    requests = (await client.get(REQUESTS.format("bob"), params={"limit": 1000})).json()
    assert [log["message_id"] for log in requests["requests"]] == world.made["bob"]
    assert requests["next_cursor"] is None
    logs = (await client.get("/v1/logs", params={"user_id": "bob", "limit": 1000})).json()
    by_id = {log["id"]: log for log in logs["logs"]}
    assert len(by_id) == len(requests["requests"])
    assert all(log == by_id[log["id"]] for log in requests["requests"])


async def test_an_integer_user_id_and_its_digits_are_one_user(
    client: httpx.AsyncClient, world: World
) -> None:
    sent = {
        type(log.body["metadata"]["user_id"])
        for log in world.logs
        if log.message_id in world.made["42"]
    }
    assert sent == {int, str}
    listing = await pages(client, REQUESTS.format("42"), "requests", 2)
    assert _flat(listing) == world.made["42"]
    found = await pages(client, "/v1/logs", "logs", 2, user_id="42")
    assert _flat(found) == world.newest_first("42")


@pytest.mark.parametrize("path", ["team/carol", "team%2Fcarol", "zo%C3%AB"])
async def test_any_user_id_is_one_path_segment_or_more(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    response = await client.get(REQUESTS.format(path))
    assert response.status_code == 200, response.text
    user = httpx.URL("/" + path).path[1:]  # percent-decoded
    assert [log["message_id"] for log in response.json()["requests"]] == world.made[user]


async def test_unknown_user_has_no_requests(client: httpx.AsyncClient) -> None:
    response = await client.get(REQUESTS.format("nobody"))
    assert response.json() == {"requests": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("path", "params", "where", "says"),
    [
        (REQUESTS.format("alice"), {"limit": 0}, "limit", "greater than or equal to 1"),
        (REQUESTS.format("alice"), {"limit": 1001}, "limit", "less than or equal to 1000"),
        (REQUESTS.format("alice"), {"user": "bob"}, "user", "Extra inputs"),
        (
            REQUESTS.format("alice"),
            {"cursor": "nope"},
            "cursor",
            "not a cursor returned by GET /v1/users",
        ),
        (REQUESTS.format("u" * 256), {}, "user_id", "at most 255 characters"),
        ("/v1/users//requests", {}, "user_id", "at least 1 character"),
        (REQUESTS.format("alice%20"), {}, "user_id", "whitespace"),
        ("/v1/logs", {"user_id": "u" * 256}, "user_id", "at most 255 characters"),
    ],
)
async def test_bad_input_is_a_422_naming_it(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], where: str, says: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][-1] == where
    assert says in error["msg"]


async def test_a_cursor_of_one_listing_is_refused_by_the_other(client: httpx.AsyncClient) -> None:
    logs = (await client.get("/v1/logs", params={"user_id": "alice", "limit": 2})).json()
    requests = (await client.get(REQUESTS.format("alice"), params={"limit": 2})).json()
    assert logs["next_cursor"] and requests["next_cursor"]
    wrong = await client.get(REQUESTS.format("alice"), params={"cursor": logs["next_cursor"]})
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["msg"] == (
        "a cursor of GET /v1/logs, not of GET /v1/users/{user_id}/requests: pass each listing"
        " its own next_cursor"
    )
    wrong = await client.get("/v1/logs", params={"cursor": requests["next_cursor"]})
    assert wrong.status_code == 422
    assert (
        "a cursor of GET /v1/users/{user_id}/requests, not of GET /v1/logs"
        in (wrong.json()["detail"][0]["msg"])
    )


async def test_a_cursor_holds_any_instance(client: httpx.AsyncClient, world: World) -> None:
    """The instance is the cursor's last field, so one with colons (host:pid) and of 255
    characters beyond ASCII still pages."""
    settings = world.settings
    t = Traffic("dana")
    long_instance = "ü:" * 127 + "x"
    for k in range(3):
        t.request("dana", long_instance, BASE + timedelta(seconds=k // 2))
    await _store(settings, t.logs)
    listing = await pages(client, REQUESTS.format("dana"), "requests", 1)
    assert _flat(listing) == [log.message_id for log in t.logs]


# --- GET /v1/logs?user_id= and `lms logs --user-id` ----------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"severity": "error"},
        {"severity": ["warn", "info"]},
        {"q": '"failed to connect"'},
        {"service": "shop"},
        {"from": "2024-05-01T12:00:00.050Z", "to": "2024-05-01T12:00:00.120Z"},
    ],
)
async def test_the_user_id_filter_of_get_v1_logs(
    client: httpx.AsyncClient, world: World, params: dict[str, Any]
) -> None:
    """Every log of the user, request logs or not, newest first by (timestamp, id)."""
    found = _flat(await pages(client, "/v1/logs", "logs", 3, user_id="alice", **params))
    expected = [
        m
        for m in world.newest_first("alice")
        if _matches(next(log for log in world.logs if log.message_id == m), params)
    ]
    assert found == expected
    assert len(found) > 0


def _matches(log: Log, params: dict[str, Any]) -> bool:
    severities = params.get("severity", [])
    severities = [severities] if isinstance(severities, str) else severities
    return (
        (not severities or log.body["severity"] in severities)
        and ("q" not in params or "failed to connect" in log.body["payload"])
        and ("from" not in params or log.timestamp >= _naive(params["from"]))
        and ("to" not in params or log.timestamp < _naive(params["to"]))
    )


def test_lms_logs_user_id(world: World) -> None:
    result = subprocess.run(
        [LMS, "logs", "--user-id", "alice", "--json", "--limit", "1000"],
        env=child_environment(world.settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["message_id"] for line in lines] == world.newest_first("alice")
    assert {line["metadata"]["user_id"] for line in lines} == {"alice"}


# --- the migration, on a database with rows ------------------------------------------------


ODD_METADATA: list[tuple[str | None, tuple[str | None, str | None, int | None]]] = [
    # metadata as old rows hold it -> (user_id, request_instance, request_seq)
    ('{"user_id": "ann", "instance": "h:1", "seq": 5}', ("ann", "h:1", 5)),
    ('{"user_id": 42, "instance": "h:1", "seq": 999999999999999999}', ("42", "h:1", 10**18 - 1)),
    ('{"user_id": "' + "u" * 256 + '", "instance": "' + "i" * 256 + '"}', (None, None, None)),
    ('{"user_id": "ann", "seq": "5"}', ("ann", None, None)),
    ('{"user_id": "ann", "seq": 12345678901234567890123}', ("ann", None, None)),
    ('{"user_id": "ann", "seq": 1000000000000000000}', ("ann", None, None)),
    ('{"user_id": "ann", "seq": -1}', ("ann", None, None)),
    ('{"user_id": "ann", "seq": 5.0, "instance": 7}', ("ann", None, None)),
    ('{"user_id": "ann", "seq": 1e3}', ("ann", None, None)),
    ('{"user_id": true, "instance": ["h"]}', (None, None, None)),
    ('{"user_id": 1.5}', (None, None, None)),
    ('{"user_id": 1e3}', (None, None, None)),
    ('{"user_id": ' + "9" * 30 + "}", (None, None, None)),
    ('{"user_id": {"id": 1}, "seq": null}', (None, None, None)),
    ('{"user_id": ""}', ("", None, None)),
    ("[1, 2]", (None, None, None)),
    (None, (None, None, None)),
]


async def test_the_migration_indexes_old_rows_and_never_fails_on_odd_metadata(
    mysql_database: str, tmp_path: Path
) -> None:
    """Rows stored before the edge rules hold anything: the ALTER keeps them all, takes what
    the rules would allow and leaves the rest NULL; their requests are then listed."""
    settings = query_settings(mysql_database)
    older = tmp_path / "sql"
    older.mkdir()
    for script in migration_files():
        if script.name < USER_MIGRATION:
            (older / script.name).write_text(script.read_text())
    await Migrator(settings, older).migrate()
    for n, (metadata, _) in enumerate(ODD_METADATA):
        _admin(
            "INSERT INTO service_logs (message_id, idempotency_key, batch_id, service_name,"
            " payload, severity, `timestamp`, metadata) VALUES (%s, %s, 1, 'old', 'p', 'info',"
            " %s, %s)",
            (f"old-{n}", f"old-{n}", BASE + timedelta(seconds=n), metadata),
            mysql_database,
        )
    applied = await Migrator(settings).migrate()
    assert applied == [m.name for m in migration_files() if m.name >= USER_MIGRATION]
    assert (MIGRATIONS / USER_MIGRATION).is_file()
    rows = _admin(
        "SELECT message_id, user_id, request_instance, request_seq FROM service_logs ORDER BY id",
        database=mysql_database,
    )
    assert [row[1:] for row in rows] == [expected for _, expected in ODD_METADATA]
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lms") as c,
    ):
        ann = (await c.get(REQUESTS.format("ann"))).json()
        assert [log["message_id"] for log in ann["requests"]] == ["old-0"]
        user_42 = (await c.get(REQUESTS.format("42"))).json()
        assert [log["message_id"] for log in user_42["requests"]] == ["old-1"]
        logs = (await c.get("/v1/logs", params={"user_id": "ann"})).json()
        assert [log["message_id"] for log in logs["logs"]] == [
            f"old-{n}" for n in (8, 7, 6, 5, 4, 3, 0)
        ]
