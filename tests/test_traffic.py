"""`lms pub` and `lms sim` through HTTP (`--http URL`): counted only once `lms api` confirmed,
retried with the same ids, so what they report is exactly what reaches the topic."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from lms.devtools.http_traffic import HttpTarget, Refused
from lms.devtools.monitor_process import child_environment, lms_command
from lms.devtools.ports import free_port
from lms.devtools.traffic import publish_n
from lms.ingest.sources.pubsub.keys import KEY_ATTRIBUTE
from tests.helpers import SettingsFactory, ensure_resources, pull_all
from tests.lms_process import lms_api

TOKEN = "traffic-token"


async def test_lms_pub_over_http_reaches_the_topic_once_each(
    settings: SettingsFactory, tmp_path: Path
) -> None:
    s = settings(ingest_tokens=TOKEN, publish_batch_size=40)
    await ensure_resources(s)
    report = tmp_path / "report.json"
    async with lms_api(s, tmp_path) as client:
        done = await asyncio.to_thread(
            subprocess.run,
            [*lms_command(), "pub", "150", "--http", str(client.base_url), "--report", report],
            env=child_environment(s),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    totals = json.loads(report.read_text())
    assert totals["published"] == 150
    received = await pull_all(s, 150)
    keys = [m.message.attributes[KEY_ATTRIBUTE] for m in received]
    assert len(set(keys)) == 150  # every log had its own id
    bodies = [json.loads(m.message.data) for m in received]
    pulled = Counter((b["service_name"], b["severity"]) for b in bodies)
    reported = {(t["service"], t["severity"]): t["count"] for t in totals["totals"]}
    assert pulled == reported


@pytest.fixture
async def flaky_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A real HTTP server that answers each new body 503 (Retry-After: 0), then 202; it
    records every body it got, and refuses a body without the token."""
    bodies: list[bytes] = []

    async def ingest(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"detail": "token"}, status=401)
        body = await request.read()
        first = body not in bodies
        bodies.append(body)
        if first:
            return web.json_response({"detail": "cut"}, status=503, headers={"Retry-After": "0"})
        count = len(body.splitlines())
        return web.json_response({"accepted": count, "rejected": []}, status=202)

    app = web.Application()
    app.router.add_post("/v1/logs", ingest)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", bodies
    finally:
        await runner.cleanup()


async def test_a_refused_request_is_retried_with_the_same_ids(
    settings: SettingsFactory, flaky_server: tuple[str, list[bytes]]
) -> None:
    url, bodies = flaky_server
    s = settings(publish_batch_size=10)
    tally = await publish_n(s, 25, seed=1, http=HttpTarget(url, TOKEN))
    assert tally.total == 25  # each counted once, after its 202
    assert len(bodies) == 6  # three chunks (10, 10, 5), each sent twice
    assert len(set(bodies)) == 3  # ... byte for byte the same, ids included
    ids = [json.loads(line)["id"] for body in set(bodies) for line in body.splitlines()]
    assert len(set(ids)) == 25


async def test_a_client_error_fails_the_run_and_counts_nothing(
    settings: SettingsFactory, flaky_server: tuple[str, list[bytes]]
) -> None:
    url, bodies = flaky_server
    with pytest.raises(ExceptionGroup) as raised:
        await publish_n(settings(), 5, http=HttpTarget(url, "wrong-token"))
    assert raised.group_contains(Refused, match="answered 401")
    assert len(bodies) == 0
