"""What the browser tests of the web UI (tests/ui/test_*.py) share: a database seeded with
known logs whose timestamps are relative to now (so the time presets find them), a real
`lms mon` on a real emulator topic and a real `lms api` (query and ingestion) on it, and one
headless Debian chromium per module driven by Playwright.

`open_page` gives a page of a fresh browser context (light or dark) that records console
errors and failed requests; `assert_quiet` fails the test on any.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from lms.devtools.monitor_process import MonitorProcess
from lms.devtools.ports import free_port
from lms.domain.record import LogRecord, Rules, parse_message
from lms.settings import Settings, load_settings
from lms.store.migrations import Migrator
from lms.store.writer import BatchWriter, StoredLog
from tests.conftest import TEST_PROJECT, mysql_config
from tests.helpers import rfc3339
from tests.lms_process import lms_api

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "ui" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / ".run" / "ui"
ROWS = "ol.logs > li.log"
"""The explorer's result rows."""
RULES = Rules(clock=lambda: datetime(9999, 12, 31, tzinfo=UTC).timestamp())

SERVICES = ("checkout", "search", "worker")
WORD = "zebracorn"
"""A word in a few payloads only: the text search must find exactly those."""
TRACE = "trace-ui-0001"
USER = "4242"
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> <b>bold</b>'


@dataclass(frozen=True)
class Seed:
    message_id: str
    body: dict[str, Any]

    @property
    def at(self) -> datetime:
        return datetime.fromisoformat(self.body["timestamp"].replace("Z", "+00:00")).replace(
            tzinfo=None
        )


def seeds(now: datetime) -> list[Seed]:
    """~330 logs before `now` (naive UTC, when the module's stack starts, so that the time
    presets see them however late the module runs): 240 in the last 50 minutes (more than
    two pages of 100), 60 over the last 5 hours, one 2 days and one 10 days old; a trace of
    3, a user's 4 requests, the word, the markup payload."""
    out: list[Seed] = []
    severities = ("debug", "info", "info", "info", "warn", "error", "info", "fatal")

    def add(i: int, at: datetime, **extra: Any) -> None:
        body: dict[str, Any] = {
            "service_name": SERVICES[i % len(SERVICES)],
            "severity": severities[i % len(severities)],
            "payload": f"request {i} served by shard {i % 7}",
            "timestamp": rfc3339(at),
            "resource_id": f"res-{i % 5}",
            "commit": f"c{i % 2}",
        }
        body.update(extra)
        out.append(Seed(f"ui-{i}", body))

    for i in range(240):
        add(i, now - timedelta(seconds=10 + i * 12))
    for i in range(240, 300):
        add(i, now - timedelta(hours=1, minutes=(i - 240) * 4))
    add(300, now - timedelta(days=2))
    add(301, now - timedelta(days=10))
    for n, i in enumerate((5, 37, 90, 170, 260, 300)):
        body = out[i].body
        body["payload"] = f"{WORD} sighting number {n} near gate {i}"
    for n, i in enumerate((12, 13, 14)):
        out[i].body.update(trace_id=TRACE, span_id=f"span-{n}", service_name="checkout")
    for n, i in enumerate((20, 40, 60, 80)):
        out[i].body["metadata"] = {
            "user_id": USER,
            "instance": "web-1:77",
            "seq": 100 - n,
            "http": {  # lms_client's request convention: what the request analytics read
                "method": "GET",
                "route": "/cart",
                "path": "/cart",
                "status_code": 200 if n else 503,
                "duration_ms": 10.0 + n,
            },
        }
    out[30].body.update(payload=XSS, severity="warn")
    out[30].body["metadata"] = {"note": "<i>markup</i>", "nested": {"a": [1, 2]}}
    return out


def stored(seeds_: Sequence[Seed]) -> list[StoredLog]:
    logs = []
    for seed in seeds_:
        record = parse_message(json.dumps(seed.body).encode(), RULES)
        assert isinstance(record, LogRecord), (seed, record)
        logs.append(StoredLog(seed.message_id, record))
    return logs


def _admin() -> pymysql.Connection:
    return pymysql.connect(**mysql_config(), charset="utf8mb4", autocommit=True)


@contextlib.contextmanager
def seeded_database() -> Iterator[str]:
    name = "lms_test_ui_" + secrets.token_hex(5)
    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        yield name
    finally:
        with _admin() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def stack_settings(emulator: str, database: str) -> Settings:
    suffix = secrets.token_hex(6)
    mysql = mysql_config()
    metrics = free_port()  # lms mon's, which lms api reads for the Health page
    return load_settings(
        _env_file=None,
        pubsub_emulator_host=emulator,
        pubsub_project=TEST_PROJECT,
        pubsub_topic=f"t-ui-{suffix}",
        pubsub_subscription=f"s-ui-{suffix}",
        mysql_host=mysql["host"],
        mysql_port=mysql["port"],
        mysql_user=mysql["user"],
        mysql_password=mysql["password"],
        mysql_database=database,
        metrics_host="127.0.0.1",
        metrics_port=metrics,
        mon_metrics_url=f"http://127.0.0.1:{metrics}/metrics",
        batchsize=50,
        flushinterval=0.3,
    )


@dataclass
class Stack:
    """The running parts: `url` is the `lms api` a browser opens, `client` an HTTP client of it."""

    settings: Settings
    url: str
    client: httpx.AsyncClient
    now: datetime
    """Naive UTC: the seeds' timestamps are relative to it."""
    seeds: list[Seed]
    ids: dict[str, int] = field(default_factory=dict)
    """message_id -> the stored log's id."""

    async def api(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@contextlib.asynccontextmanager
async def running_stack(emulator: str, workdir: Path, **api_env: str) -> AsyncIterator[Stack]:
    """Seeded database, `lms mon` (started first: it makes the topic and subscription), then
    `lms api` on a free port; all stopped and dropped at the end."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    seeded = seeds(now)
    with seeded_database() as database:
        settings = stack_settings(emulator, database)
        await Migrator(settings).migrate()
        writer = BatchWriter(settings)
        try:
            await writer.write_batch(stored(seeded), [])
        finally:
            await writer.close()
        mon = MonitorProcess(settings, workdir / "lms", "mon").start()
        try:
            await mon.wait_started()
            async with lms_api(settings, workdir, **api_env) as client:
                stack = Stack(settings, str(client.base_url).rstrip("/"), client, now, seeded)
                with _admin() as conn, conn.cursor() as cur:
                    cur.execute(f"SELECT message_id, id FROM `{database}`.service_logs")
                    stack.ids = {str(m): int(i) for m, i in cur.fetchall()}
                yield stack
        finally:
            await asyncio.to_thread(mon.stop_blocking)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240  (once per module, before the browser)
        pytest.fail(
            "the browser tests need Debian's chromium at /usr/bin/chromium:"
            " apt-get install -y chromium (.ci/run installs it)"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Console:
    """What a page said that a user would not want: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)

    def unexpected(self, allowed: Sequence[str] = ()) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@contextlib.asynccontextmanager
async def open_page(
    browser: Browser,
    scheme: str = "light",
    width: int = 1280,
    height: int = 800,
    bypass_csp: bool = False,
) -> AsyncIterator[tuple[Page, Console]]:
    """`bypass_csp` only for the axe-core scan, whose script Playwright injects inline (the
    CSP, rightly, refuses it); every other test runs under the real policy, whose violations
    would show as console errors."""
    context: BrowserContext = await browser.new_context(
        bypass_csp=bypass_csp,
        color_scheme=scheme,  # type: ignore[arg-type]
        viewport={"width": width, "height": height},
        timezone_id="Europe/Berlin",
        locale="en-GB",
    )
    page = await context.new_page()
    console = Console()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.errors.append(f"{message.text} at {message.location.get('url', '')}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    try:
        yield page, console
    finally:
        await context.close()


def assert_quiet(console: Console, *allowed: str) -> None:
    """No console errors but those `allowed`."""
    problems = console.unexpected(allowed)
    assert not problems, problems


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations of the page as it is now."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => (await axe.run(document)).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]
