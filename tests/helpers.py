"""Async helpers for integration tests: publish, pull, build logs, query MySQL, poll, wait."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiomysql
from google.api_core.exceptions import DeadlineExceeded

from lms.devtools.resources import ensure_resources as ensure_resources  # for the tests
from lms.domain.record import LogRecord, Rules, parse_message
from lms.ingest.sources.pubsub.client import publisher_client, subscriber_client
from lms.settings import Settings, load_settings
from lms.store.connection import connect_kwargs
from lms.store.writer import BatchWriter, StoredLog

SettingsFactory = Callable[..., Settings]
"""The type of the `settings` fixture: keyword overrides in, Settings out."""

PUBLISH_CHUNK = 1000
PUBLISH_CHUNK_BYTES = 8 << 20  # below the 10 MB request limit of Pub/Sub


async def publish(
    settings: Settings,
    messages: Sequence[bytes],
    attributes: Mapping[str, str] | None = None,
) -> list[str]:
    """Publish `messages` to the topic of `settings` (which must exist); returns message ids."""
    attrs = dict(attributes or {})
    ids: list[str] = []
    async with publisher_client(settings) as client:
        chunk: list[dict[str, Any]] = []
        size = 0
        for data in messages:
            if chunk and (len(chunk) >= PUBLISH_CHUNK or size + len(data) > PUBLISH_CHUNK_BYTES):
                response = await client.publish(topic=settings.topic_path, messages=chunk)
                ids.extend(response.message_ids)
                chunk, size = [], 0
            chunk.append({"data": data, "attributes": attrs})
            size += len(data)
        if chunk:
            response = await client.publish(topic=settings.topic_path, messages=chunk)
            ids.extend(response.message_ids)
    return ids


def rfc3339(moment: datetime) -> str:
    """RFC 3339 with offset; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def make_log(
    service: str,
    severity: str,
    payload: str,
    timestamp: datetime | str | None = None,
    **extra: object,
) -> bytes:
    """A log message as JSON bytes; `timestamp` defaults to now, a str is used verbatim."""
    if timestamp is None:
        timestamp = datetime.now(UTC)
    stamp = timestamp if isinstance(timestamp, str) else rfc3339(timestamp)
    body = {
        "service_name": service,
        "payload": payload,
        "severity": severity,
        "timestamp": stamp,
        **extra,
    }
    return json.dumps(body).encode("utf-8")


async def db_query(
    settings: Settings, sql: str, args: Sequence[object] | Mapping[str, object] | None = None
) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh autocommit connection to the settings' database."""
    kwargs = {**connect_kwargs(settings, settings.mysql_database), "autocommit": True}
    conn = await aiomysql.connect(**kwargs)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql, args)
            return list(await cur.fetchall())
    finally:
        conn.close()


async def wait_until(
    predicate: Callable[[], Awaitable[object] | object],
    timeout: float = 30.0,  # noqa: ASYNC109 - the point is a failed assertion, not a cancel
    interval: float = 0.1,
    message: str = "",
) -> object:
    """Poll `predicate` (sync or async) until it is truthy and return its value.

    Raises AssertionError naming `message` and the last value when `timeout` runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(
                f"condition not met within {timeout}s: {what} (last value {value!r})"
            )
        await asyncio.sleep(interval)


async def pull_all(settings: Settings, expected: int) -> list[Any]:
    """Pull until `expected` messages came and then a pull finds nothing more; ack them."""
    received: list[Any] = []
    async with subscriber_client(settings) as client:
        async with asyncio.timeout(60):
            while True:
                try:
                    response = await client.pull(
                        subscription=settings.subscription_path,
                        max_messages=1000,
                        timeout=3,
                        retry=None,
                    )
                except DeadlineExceeded:
                    response = None
                if response is None or not response.received_messages:
                    if len(received) >= expected:
                        break
                    continue
                received.extend(response.received_messages)
        if received:
            await client.acknowledge(
                subscription=settings.subscription_path,
                ack_ids=[rm.ack_id for rm in received],
            )
    return received


def ingest_app(publisher: object, **overrides: object) -> Any:
    """An ingestion-only `lms api` app publishing through `publisher` (a stand-in for tests
    of a protocol's answers without Pub/Sub); made-up hosts allowed (http://test)."""
    from lms.api.app import create_app  # FastAPI loads only for the tests that use it

    settings = load_settings(_env_file=None, api_query=False, api_allowed_hosts="*", **overrides)
    return create_app(settings, publisher=publisher)  # type: ignore[arg-type]


def stored_logs(bodies: Sequence[tuple[str, dict[str, Any]]], rules: Rules) -> list[StoredLog]:
    """(message id, body) pairs as the writer gets them, checked by the edge `rules`."""
    logs = []
    for message_id, body in bodies:
        record = parse_message(json.dumps(body).encode(), rules)
        assert isinstance(record, LogRecord), (body, record)
        logs.append(StoredLog(message_id, record))
    return logs


async def store_with_redeliveries(settings: Settings, logs: Sequence[StoredLog]) -> None:
    """Batches of 250 by the real writer; every batch is then redelivered, mixed with new
    rows (the writer counts by batch_id then), and two replicas race on the same batch."""
    one, two = BatchWriter(settings), BatchWriter(settings)
    try:
        batches = [list(logs[i : i + 250]) for i in range(0, len(logs), 250)]
        for batch in batches[::2]:
            await one.write_batch(batch, [])
        for i in range(1, len(batches), 2):  # half redelivered with the next, new batch
            await one.write_batch(batches[i - 1][:100] + batches[i], [])
        for batch in batches[-2:]:  # two replicas, the same redelivered batch
            await asyncio.gather(one.write_batch(batch, []), two.write_batch(batch, []))
    finally:
        await one.close()
        await two.close()


PATTERN_TIERS = (
    ("pattern_service_rollup", "hour_start", "%%Y-%%m-%%d %%H:00:00", "service_name, "),
    ("pattern_service_rollup_day", "day_start", "%%Y-%%m-%%d", "service_name, "),
    ("pattern_rollup", "hour_start", "%%Y-%%m-%%d %%H:00:00", ""),
    ("pattern_rollup_day", "day_start", "%%Y-%%m-%%d", ""),
)
"""The pattern rollups of sql/013: table, time column, its unit (DATE_FORMAT, % doubled:
run with arguments, even none), and the service column when keyed by it."""


def pattern_oracles() -> list[tuple[str, str, str]]:
    """(table, its rows, COUNT(*) of the logs with a pattern per its key): for every tier the
    two must hold the same rows (one row per key, exact counts; see `same_rows`)."""
    pairs = []
    for table, column, unit, service in PATTERN_TIERS:
        key = f"DATE_FORMAT({{}}, '{unit}'), {service}pattern_id, CAST(severity AS CHAR)"
        logs = (
            f"SELECT {key.format('`timestamp`')}, COUNT(*) FROM service_logs"
            f" WHERE pattern_id IS NOT NULL GROUP BY {key.format('`timestamp`')}"
        )
        rows = f"SELECT {key.format(column)}, `count` FROM {table}"
        pairs.append((table, rows, logs))
    return pairs


def same_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows of `pattern_oracles` comparable: sorted, the count an int (SUM gives a Decimal)."""
    return sorted((*(str(v) for v in row[:-1]), int(row[-1])) for row in rows)
