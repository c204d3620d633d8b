"""The request-logging middleware end to end, all real: a FastAPI app (uvicorn) and a Flask
app (Werkzeug's threaded WSGI server), each run as two server processes on two ports, their
LMSHandler publishing to the Pub/Sub emulator, a real `lms mon` storing into MariaDB and a
real `lms api` answering GET /v1/users/{id}/requests.

One user makes 200 sequential requests, alternating between the two instances, a mix of
200s, 404s, 422s and handlers that raise, while other users make requests at the same time
on both. Every one of the user's requests must be stored once with its status, and the
listing must give them back in exactly the order they were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lms.devtools.monitor_process import child_environment
from lms.devtools.ports import free_port
from lms.settings import Settings
from tests.helpers import SettingsFactory, db_query, ensure_resources, wait_until
from tests.lms_process import lms_api

pytestmark = pytest.mark.integration

APPS = Path(__file__).with_name("client_web_apps.py")
CLIENT_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = CLIENT_ROOT.parent.parent
REQUESTS = 200
OTHERS = ("bob", "carol")


@contextlib.asynccontextmanager
async def web_instances(
    framework: str, settings: Settings, workdir: Path
) -> AsyncIterator[list[str]]:
    """Two server processes of the framework's app; yields their base URLs once both answer."""
    path = os.pathsep.join(str(p) for p in (CLIENT_ROOT, REPO_ROOT, APPS.parent))
    env = child_environment(settings, {"PYTHONPATH": path})
    procs: list[asyncio.subprocess.Process] = []
    urls: list[str] = []
    with contextlib.ExitStack() as files:
        try:
            for n in range(2):
                port = free_port()
                log_path = workdir / f"{framework}-{n}.log"
                log = files.enter_context(log_path.open("wb"))
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, str(APPS), framework, str(port),
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
                procs.append(proc)
                urls.append(f"http://127.0.0.1:{port}")
                async with httpx.AsyncClient(timeout=5) as client:

                    async def serving(
                        proc: Any = proc, url: str = urls[-1], log_path: Path = log_path
                    ) -> bool:
                        assert proc.returncode is None, f"it exited, see {log_path}"
                        with contextlib.suppress(httpx.TransportError):
                            return (await client.get(url + "/ping")).status_code == 200
                        return False

                    await wait_until(serving, timeout=60, interval=0.1, message=f"{port} up")
            yield urls
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            for proc in procs:
                try:
                    async with asyncio.timeout(30):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def plan(seed: int) -> list[tuple[str, int]]:
    """(path, expected status) of the user's requests: 200s, 404s, 422s and 500s mixed."""
    rng = random.Random(seed)
    kinds = [
        (lambda n: f"/users/alice/items/{n}", 200),
        (lambda n: f"/nowhere/{n}", 404),
        (lambda n: f"/check/x{n}", 422),
        (lambda n: f"/boom/{n}", 500),
    ]
    out = []
    for n in range(REQUESTS):
        make, status = rng.choice(kinds)
        out.append((make(n), status))
    return out


async def others_use_it(urls: list[str], stop: asyncio.Event) -> int:
    """Other users, concurrently on both instances, until `stop`; how many requests."""
    count = 0
    async with httpx.AsyncClient(timeout=30) as client:

        async def one_user(user: str) -> None:
            nonlocal count
            n = 0
            while not stop.is_set():
                url = urls[n % 2]
                path = f"/users/{user}/items/{n}" if n % 3 else f"/check/y{n}"
                await client.get(url + path, headers={"X-User": user})
                count += 1
                n += 1

        await asyncio.gather(*(one_user(user) for user in OTHERS for _ in range(2)))
    return count


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
async def test_one_users_requests_across_two_instances_come_back_in_order(
    framework: str, settings: SettingsFactory, lms_mon: Any, tmp_path: Path
) -> None:
    s = settings(flushinterval=0.1)
    await ensure_resources(s)
    monitor = lms_mon(s)
    expected = plan(seed=15)
    stop = asyncio.Event()
    async with web_instances(framework, s, tmp_path) as urls:
        others = asyncio.create_task(others_use_it(urls, stop))
        # No keep-alive: uvicorn closes a connection after an app's exception (once
        # Starlette's 500 is sent), and a request racing that close would fail to read.
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=fresh) as client:
            for n, (path, status) in enumerate(expected):
                answer = await client.get(urls[n % 2] + path, headers={"X-User": "alice"})
                assert answer.status_code == status, (path, answer.text)
        stop.set()
        other_count = await others
        assert other_count > 0

        counts: list[Any] = []

        async def stored() -> bool:
            counts[:] = await db_query(
                s,
                "SELECT user_id, COUNT(*) FROM service_logs WHERE user_id IN"
                " ('alice', 'bob', 'carol') GROUP BY user_id",
            )
            return sum(count for _user, count in counts) >= REQUESTS + other_count

        try:
            await wait_until(stored, timeout=90, message="every request stored")
        except AssertionError as exc:
            rejected = await db_query(s, "SELECT reason, detail FROM rejected_messages LIMIT 3")
            raise AssertionError(
                f"{exc}: {counts} of {REQUESTS} + {other_count}; rejected: {rejected}"
            ) from None
    assert monitor.alive

    async with lms_api(s, tmp_path) as api:
        listed: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "64", **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/v1/users/alice/requests", params=params)).json()
            listed += page["requests"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bob = (await api.get("/v1/users/bob/requests", params={"limit": "1000"})).json()

    got = [
        (log["metadata"]["http"]["path"], log["metadata"]["http"]["status_code"]) for log in listed
    ]
    assert got == expected  # all 200, each once, with its status, in the order made
    instances = [log["metadata"]["instance"] for log in listed]
    assert len(set(instances)) == 2
    assert instances[0::2] == [instances[0]] * (REQUESTS // 2)  # alternating, as sent
    severities = {status: set() for _, status in expected}
    for log, (_, status) in zip(listed, expected, strict=True):
        severities[status].add(log["severity"])
    assert severities == {200: {"info"}, 404: {"warn"}, 422: {"warn"}, 500: {"error"}}
    boom = next(log for log in listed if log["metadata"]["http"]["status_code"] == 500)
    assert boom["payload"].startswith("GET /boom/{n} 500 ")
    assert "RuntimeError: boom" in boom["payload"]
    assert {log["service_name"] for log in listed} == {f"web-{framework}"}
    # The others were stored too, each with their own user and in their own order per instance.
    assert bob["requests"]
    assert all(log["metadata"]["user_id"] == "bob" for log in bob["requests"])
    for instance in set(instances):
        seqs = [
            log["metadata"]["seq"]
            for log in bob["requests"]
            if log["metadata"]["instance"] == instance
        ]
        assert seqs == sorted(seqs)
