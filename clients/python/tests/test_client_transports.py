"""Both transports against real parts: the Pub/Sub emulator, a real `lms api`, `lms mon` and
MariaDB; and the handler in real processes (flush at exit, the spool across processes).

What arrives is read back from the topic (the data and its `lms_key` attribute, from which
`lms mon` derives the idempotency key) or from `service_logs` once a real `lms mon` stored it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from lms.devtools.ports import free_port
from lms.domain.record import LogRecord, parse_message
from lms_client import HTTPTransport, LMSHandler, PubSubTransport, Timer
from lms_client.entry import Entry
from lms_client.spool import Spool
from tests.helpers import SettingsFactory, db_query, ensure_resources, pull_all, wait_until
from tests.lms_process import lms_api

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("client_app.py")
CLIENT_ROOT = Path(__file__).resolve().parent.parent


def _logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger("lms-client-transports")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def _received(messages: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(lms_key, fields) of pulled messages; each body must be a log LMS accepts."""
    out = []
    for received in messages:
        message = received.message
        assert isinstance(parse_message(message.data), LogRecord), message.data
        out.append((message.attributes["lms_key"], json.loads(message.data)))
    return out


async def _drain(handler: LMSHandler) -> None:
    assert await asyncio.to_thread(handler.drain, 60)


def _run_app(*args: str, emulator: str | None = None) -> dict[str, Any]:
    """Run client_app.py to its normal exit; its counters, printed after the handler's
    atexit hook ran."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CLIENT_ROOT), os.getcwd()])}
    if emulator is not None:
        env["PUBSUB_EMULATOR_HOST"] = emulator
    done = subprocess.run(
        [sys.executable, str(APP), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- Pub/Sub ---------------------------------------------------------------------------------


async def test_pubsub_transport_publishes_logs_lms_accepts(settings: SettingsFactory) -> None:
    s = settings()
    await ensure_resources(s)
    handler = LMSHandler(
        service_name="checkout",
        transport=PubSubTransport(project=s.pubsub_project, topic=s.pubsub_topic),
        flush_interval=0.05,
    )
    logger = _logger(handler)
    logger.warning("card declined", extra={"order": 7})
    try:
        raise KeyError("missing")
    except KeyError:
        logger.exception("lookup failed")
    logger.log(25, "notice-like")
    logger.info("y" * 5000)
    await _drain(handler)
    handler.close()
    got = {fields["payload"][:13]: (key, fields) for key, fields in _received(await pull_all(s, 4))}
    assert len({key for key, _ in got.values()}) == 4
    assert all("id" not in fields for _, fields in got.values())  # the key is the attribute
    assert got["card declined"][1]["severity"] == "warn"
    assert got["card declined"][1]["metadata"] == {"logger": "lms-client-transports", "order": 7}
    assert got["lookup failed"][1]["payload"].endswith("KeyError: 'missing'")
    assert got["notice-like"][1]["severity"] == "warn"
    assert len(got["y" * 13][1]["payload"]) == 2048
    assert handler.counters.sent == 4


async def test_records_logged_before_a_normal_exit_all_arrive(settings: SettingsFactory) -> None:
    """The atexit hook flushes: a process that logs and returns loses nothing."""
    s = settings()
    await ensure_resources(s)
    counters = await asyncio.to_thread(
        _run_app, "pubsub", s.pubsub_project, s.pubsub_topic, "300", emulator=s.pubsub_emulator_host
    )
    assert counters["sent"] == 300 and counters["dropped"] == 0
    got = _received(await pull_all(s, 300))
    assert len({key for key, _ in got}) == 300
    assert sorted(fields["metadata"]["n"] for _, fields in got) == list(range(300))


async def test_the_spool_survives_an_exit_while_lms_is_down_and_is_stored_once(
    settings: SettingsFactory, lms_mon: Any, tmp_path: Path
) -> None:
    """A process logs while Pub/Sub is unreachable and exits: its logs are in the spool. The
    next process with the same directory resends them; a resend of the same files (a crash
    between send and delete) stores nothing twice: lms mon keeps each key once."""
    s = settings()
    await ensure_resources(s)
    spool = tmp_path / "spool"
    dead = f"127.0.0.1:{free_port()}"
    first = await asyncio.to_thread(
        _run_app,
        "pubsub",
        s.pubsub_project,
        s.pubsub_topic,
        "200",
        "--spool",
        str(spool),
        "--retry-for",
        "0.3",
        "--close-timeout",
        "2",
        "--tag",
        "first",
        emulator=dead,
    )
    assert (first["sent"], first["spooled"], first["dropped"]) == (0, 200, 0)
    files = Spool(spool, 1 << 30).files()
    assert files
    kept = tmp_path / "kept"
    kept.mkdir()
    for path in files:
        shutil.copy(path, kept / path.name)

    args = ("pubsub", s.pubsub_project, s.pubsub_topic)
    second = await asyncio.to_thread(
        _run_app, *args, "10", "--spool", str(spool), "--tag", "second",
        emulator=s.pubsub_emulator_host,
    )  # fmt: skip
    assert second["sent"] == 210 and second["dropped"] == 0
    assert not Spool(spool, 1 << 30).files()
    for path in kept.iterdir():  # as if the resend had crashed before deleting the files
        shutil.copy(path, spool / path.name)
    third = await asyncio.to_thread(
        _run_app, *args, "0", "--spool", str(spool), emulator=s.pubsub_emulator_host
    )
    assert third["sent"] == 200

    monitor = lms_mon(settings(flushinterval=0.2), args=("--drain", "1"))
    assert await monitor.wait(90) == 0
    rows = await db_query(
        s,
        "SELECT COUNT(*), COUNT(DISTINCT payload) FROM service_logs"
        " WHERE service_name = 'client-app'",
    )
    assert rows == [(210, 210)]


# --- HTTP, a real lms api ------------------------------------------------------------------


async def test_http_transport_sends_ids_that_become_the_keys(
    settings: SettingsFactory, tmp_path: Path
) -> None:
    s = settings()
    await ensure_resources(s)
    async with lms_api(s, tmp_path) as api:
        handler = LMSHandler(
            service_name="checkout",
            transport=HTTPTransport(url=str(api.base_url)),
            flush_interval=0.05,
            batch_size=7,
        )
        logger = _logger(handler)
        for i in range(20):
            logger.info("n %d", i, extra={"n": i})
        await _drain(handler)
        handler.close()
    assert handler.counters.sent == 20
    got = _received(await pull_all(s, 20))
    assert len({key for key, _ in got}) == 20
    assert all("id" not in fields for _, fields in got)
    assert sorted(fields["metadata"]["n"] for _, fields in got) == list(range(20))


async def test_http_refusals_are_permanent_and_partial(
    settings: SettingsFactory, tmp_path: Path
) -> None:
    s = settings()
    await ensure_resources(s)
    stamp = b'"timestamp":"2026-12-01T08:00:00Z"}'
    good = b'{"service_name":"svc","severity":"info","payload":"ok",' + stamp
    bad = b'{"service_name":"svc","severity":"loud","payload":"no",' + stamp
    async with lms_api(s, tmp_path, INGEST_TOKENS="right") as api:
        url = str(api.base_url)
        wrong = await asyncio.to_thread(
            HTTPTransport(url, token="wrong").send, [Entry("k-0", good)]
        )
        assert [(r.index, r.reason) for r in wrong] == [(0, "401")]
        right = HTTPTransport(url, token="right")
        partial = await asyncio.to_thread(right.send, [Entry("k-1", good), Entry("k-2", bad)])
        assert [(r.index, r.reason) for r in partial] == [(1, "invalid_field")]
        none_valid = await asyncio.to_thread(right.send, [Entry("k-3", bad)])
        assert [(r.index, r.reason) for r in none_valid] == [(0, "invalid_field")]

        seen: list[Any] = []
        handler = LMSHandler(
            service_name="svc",
            transport=HTTPTransport(url, token="wrong"),
            flush_interval=0.05,
            on_error=seen.append,
        )
        _logger(handler).info("never stored")
        await _drain(handler)
        handler.close()
    assert handler.counters.dropped_by == {"rejected": 1}
    assert seen[0].kind == "rejected" and "401" in seen[0].detail
    (message,) = await pull_all(s, 1)
    assert message.message.attributes["lms_key"] == "k-1"


async def test_lms_down_at_start_then_back(settings: SettingsFactory, tmp_path: Path) -> None:
    """The handler starts while nothing listens on its port; the logs wait in the queue,
    retried, and all arrive once `lms api` starts there."""
    s = settings()
    await ensure_resources(s)
    port = free_port()
    handler = LMSHandler(
        service_name="checkout",
        transport=HTTPTransport(url=f"http://127.0.0.1:{port}"),
        flush_interval=0.05,
        retry_for=120,
        on_error=lambda _p: None,
    )
    logger = _logger(handler)
    for i in range(50):
        logger.info("n %d", i)
    await wait_until(lambda: handler.counters.retried > 0, message="a failed send retried")
    assert handler.counters.sent == 0
    async with lms_api(s, tmp_path, port=port):
        await wait_until(lambda: handler.counters.sent == 50, timeout=60, message="all sent")
    handler.close()
    got = _received(await pull_all(s, 50))
    assert len({key for key, _ in got}) == 50
    assert handler.counters.dropped == 0


async def test_http_batches_over_lms_apis_limit_are_split(
    settings: SettingsFactory, tmp_path: Path
) -> None:
    """An `lms api` with a lower INGEST_MAX_LOGS than the handler's batches answers 413: the
    batch is halved until it fits, and every log arrives once."""
    s = settings()
    await ensure_resources(s)
    async with lms_api(s, tmp_path, INGEST_MAX_LOGS="3") as api:
        handler = LMSHandler(
            service_name="checkout",
            transport=HTTPTransport(url=str(api.base_url)),
            batch_size=10,
            flush_interval=60,
        )
        logger = _logger(handler)
        for i in range(10):
            logger.info("n %d", i)
        await _drain(handler)
        handler.close()
    assert handler.counters.sent == 10 and handler.counters.dropped == 0
    assert len({key for key, _ in _received(await pull_all(s, 10))}) == 10


class RecordingTimer(Timer):
    """Real time, a record of every wait the sending thread asked for, and a gate: while
    `open` is clear, the next wait holds the thread (`parked` says it is there) until it is
    set, so that a test can change the world between two attempts, not during one."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.open = threading.Event()
        self.open.set()
        self.parked = threading.Event()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        if not self.open.is_set():
            self.parked.set()
            self.open.wait()
        return super().wait(event, seconds)


async def test_http_503_is_retried_after_its_retry_after(
    settings: SettingsFactory, tmp_path: Path
) -> None:
    """`lms api` answers 503 with `Retry-After: 1` while its topic does not exist: the
    handler waits exactly that long between attempts, and the logs arrive once the topic is
    there."""
    s = settings()
    timer = RecordingTimer()
    async with lms_api(s, tmp_path) as api:
        handler = LMSHandler(
            service_name="checkout",
            transport=HTTPTransport(url=str(api.base_url)),
            flush_interval=0.05,
            retry_for=120,
            timer=timer,
            on_error=lambda _p: None,
        )
        logger = _logger(handler)
        for i in range(5):
            logger.info("n %d", i)
        await wait_until(lambda: handler.counters.retried >= 10, message="two retries")
        assert handler.counters.sent == 0
        # The topic and its subscription are made while the handler waits between attempts:
        # an attempt between the two would be published to a topic without a subscription,
        # where Pub/Sub keeps nothing (seen in CI).
        timer.open.clear()
        await wait_until(timer.parked.is_set, message="the handler waits between attempts")
        await ensure_resources(s)
        timer.open.set()
        await wait_until(lambda: handler.counters.sent == 5, timeout=60, message="all sent")
        handler.close()
    assert timer.waits and set(timer.waits) == {1.0}
    assert len({key for key, _ in _received(await pull_all(s, 5))}) == 5
