"""`lms mon`'s stop has a deadline, and errors a retry cannot fix end it at once.

* SHUTDOWN_TIMEOUT: a flush that cannot commit (the database went silent) does not keep the
  process alive; past the deadline the batch is abandoned unacked, the held messages are
  handed back (nacked) for redelivery, and the exit status (3) says so. A second monitor then
  stores every message exactly once, without waiting for the ack deadline to expire.
* A terminal database error at start-up (access denied) exits 1 at once with one clear line,
  instead of "waiting" for a database that answers but will never accept us.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from lms.devtools.backlog import subscription_backlog
from lms.ingest.supervisor import Supervisor
from tests.helpers import db_query, ensure_resources, make_log, publish, wait_until
from tests.lms_process import lms_mon_fixture  # noqa: F401  (the `lms_mon` fixture)

pytestmark = pytest.mark.integration

EXIT_ABANDONED = 3


async def _stored(settings) -> int:
    rows = await db_query(settings, "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM service_logs")
    count, distinct = (int(v) for v in rows[0])
    assert count == distinct, "a message was stored twice"
    return count


async def test_shutdown_deadline_abandons_the_flush_unacked_and_exits_3(
    settings, tcp_proxy, lms_mon
) -> None:
    base = settings()
    proxy = await tcp_proxy(base.mysql_host, base.mysql_port)
    # ACK_DEADLINE 600: without the hand-back, the second monitor would wait ten minutes.
    s = settings(mysql_port=proxy.port, batchsize=1000, flushinterval=600, ack_deadline=600)
    await ensure_resources(s)
    first = lms_mon(s, name="first", SHUTDOWN_TIMEOUT="2")
    await first.wait_for("monitor started", timeout=60)
    await publish(s, [make_log("svc-sd", "info", f"m{i}") for i in range(50)])
    await wait_until(lambda: first.received >= 50, timeout=30, message="50 pulled")

    await proxy.blackhole()  # the shutdown flush now hangs on its write
    stopping = time.monotonic()
    first.sigterm()
    assert await first.wait(timeout=30) == EXIT_ABANDONED
    # The deadline, plus the bounded hand-back, not the 30 s DB_TIMEOUT of the write.
    assert time.monotonic() - stopping < 15
    (abandoned,) = first.events(
        "shutdown deadline passed: in-flight work abandoned unacked; Pub/Sub redelivers it"
    )
    assert abandoned["held"] == 50
    assert first.committed == 0

    await proxy.restore()
    second = lms_mon(settings(batchsize=10, flushinterval=0.5), name="second")
    await wait_until(lambda: _equals(_stored(base), 50), timeout=30, message="50 stored once")
    assert await second.stop() == 0
    assert await subscription_backlog(base) == 0


async def test_access_denied_at_start_up_exits_1_with_one_line(settings, lms_mon) -> None:
    s = settings(mysql_password="not-the-password")
    mon = lms_mon(s)
    started = time.monotonic()
    assert await mon.wait(timeout=30) == 1
    assert time.monotonic() - started < 20
    errors = [e for e in mon.events() if e.get("level") == "error"]
    assert len(errors) == 1, errors
    assert "Access denied" in str(errors[0]["error"])
    assert not mon.events("database not reachable, waiting")
    assert "Traceback" not in mon.err_path.read_text() + mon.log_path.read_text()


async def _equals(value, expected) -> bool:
    return await value == expected


def _nacked() -> float:
    return REGISTRY.get_sample_value("lms_messages_nacked_total") or 0.0


async def test_abandoned_messages_are_counted_as_nacked(settings, tcp_proxy) -> None:
    """In-process, to read the counter: the hand-back moves lms_messages_nacked_total."""
    base = settings()
    proxy = await tcp_proxy(base.mysql_host, base.mysql_port)
    s = settings(mysql_port=proxy.port, batchsize=1000, flushinterval=600, shutdown_timeout=1)
    await ensure_resources(s)
    supervisor = Supervisor(s)
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    await wait_until(lambda: supervisor.ready, timeout=30, message="subscribed")
    await publish(s, [make_log("svc-nk", "warn", f"m{i}") for i in range(20)])
    assert supervisor.dispatcher is not None
    dispatcher = supervisor.dispatcher
    await wait_until(lambda: dispatcher.held == 20, timeout=30, message="20 held")
    before = _nacked()
    await proxy.blackhole()
    stop.set()
    await asyncio.wait_for(running, 30)
    assert supervisor.abandoned == 20
    assert _nacked() - before == 20
    assert dispatcher.held == 0
    assert dispatcher.flow.outstanding == 0


async def test_drain_mode_stops_by_itself_once_everything_is_stored(settings) -> None:
    """arq's burst mode: drain what is there, commit and ack it, then return on its own."""
    s = settings(batchsize=10, flushinterval=0.2)
    await ensure_resources(s)
    await publish(s, [make_log("svc-dr", "debug", f"m{i}") for i in range(35)])
    supervisor = Supervisor(s, drain_idle=1.0)
    await asyncio.wait_for(supervisor.run(asyncio.Event()), 60)
    assert supervisor.abandoned is None
    assert await _stored(s) == 35
    assert supervisor.dispatcher is not None and supervisor.dispatcher.held == 0
    assert await subscription_backlog(s) == 0


async def test_lms_mon_drain_exits_0_once_the_backlog_is_stored(settings, lms_mon) -> None:
    s = settings(batchsize=20, flushinterval=0.2)
    await ensure_resources(s)
    await publish(s, [make_log("svc-dc", "error", f"m{i}") for i in range(45)])
    mon = lms_mon(s, args=("--drain", "1"))
    assert await mon.wait(timeout=60) == 0
    assert mon.matching("drained")
    assert await _stored(s) == 45
    assert await subscription_backlog(s) == 0
