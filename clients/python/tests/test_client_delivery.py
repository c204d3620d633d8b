"""The handler's delivery logic: queue-full policies, retries (Retry-After, backoff, giving
up), the spool (order, bound, exactly once by key), flush/close, and never raising.

In-process transports stand in for LMS here (client_support); time is injected where the
logic waits (InstantTimer), and the tests wait on conditions, never on sleeps.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from client_support import Collector, Gate, InstantTimer, Scripted, make_handler, retryable
from lms_client import LMSHandler
from lms_client.delivery import backoff
from lms_client.http import retry_after
from lms_client.spool import Spool


def _logger(handler: logging.Handler, name: str = "lms-client-delivery") -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def _until(condition: object, timeout: float = 30.0) -> None:
    """Wait for a condition of another thread (the sender), polling."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# --- backoff and Retry-After ---------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    assert [backoff(n, None, 0.2, 10.0, lambda: 0.0) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert [backoff(n, None, 0.2, 10.0, lambda: 1.0) for n in (1, 2, 3)] == [0.2, 0.4, 0.8]
    assert backoff(40, None, 0.2, 10.0, lambda: 1.0) == 10.0


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    assert backoff(1, 7.0, 0.2, 10.0) == 7.0
    assert backoff(5, 0.0, 0.2, 10.0) == 0.0
    assert backoff(1, 10_000.0, 0.2, 10.0) == 300.0


def test_retry_after_header_forms() -> None:
    assert retry_after("3") == 3.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    assert retry_after("\u00b2") is None  # "²": str.isdigit() says yes, float() says no
    now = 1_764_576_000.0  # 2025-12-01T08:00:00Z
    assert retry_after("Mon, 01 Dec 2025 08:00:30 GMT", now=now) == 30.0
    assert retry_after("Mon, 01 Dec 2025 07:00:00 GMT", now=now) == 0.0


# --- retries -------------------------------------------------------------------------------


def test_a_batch_is_retried_with_the_same_keys_honouring_retry_after() -> None:
    timer = InstantTimer()
    transport = Scripted([retryable("429", 7.0), retryable("503", 2.0), None])
    handler = make_handler(transport, timer=timer, on_error=lambda _p: None)
    logger = _logger(handler)
    for i in range(3):
        logger.info("n %d", i)
    assert handler.drain(30)
    assert timer.waits == [7.0, 2.0]
    first, second, third = transport.attempts
    assert first == second == third and len(first) == 3
    counters = handler.counters
    assert (counters.sent, counters.retried, counters.dropped) == (3, 6, 0)
    handler.close()


def test_retries_stop_after_retry_for_and_the_loss_is_counted_and_reported() -> None:
    timer = InstantTimer()
    transport = Scripted([retryable("down")] * 100)
    seen: list[object] = []
    handler = make_handler(transport, timer=timer, retry_for=5.0, on_error=seen.append)
    _logger(handler).info("lost")
    assert handler.drain(30)
    assert sum(timer.waits) <= 5.0 and len(timer.waits) >= 3
    assert handler.counters.dropped_by == {"undeliverable": 1}
    (problem,) = seen
    assert problem.kind == "undeliverable" and problem.count == 1  # type: ignore[attr-defined]
    assert "down" in problem.detail  # type: ignore[attr-defined]
    handler.close()


def test_refused_logs_are_counted_the_rest_sent() -> None:
    transport = Scripted([[1]])
    seen: list[object] = []
    handler = make_handler(transport, on_error=seen.append)
    logger = _logger(handler)
    for i in range(3):
        logger.info("n %d", i)
    assert handler.drain(30)
    assert handler.counters.sent == 2
    assert handler.counters.dropped_by == {"rejected": 1}
    assert [p.kind for p in seen] == ["rejected"]  # type: ignore[attr-defined]
    handler.close()


# --- queue full ----------------------------------------------------------------------------


def test_full_queue_drops_and_counts_without_blocking() -> None:
    gate = Gate()
    handler = make_handler(gate, queue_size=5, batch_size=1, on_error=lambda _p: None)
    logger = _logger(handler)
    logger.info("in flight")
    assert gate.entered.wait(30)  # the sender holds it; now fill the queue
    started = time.monotonic()
    for i in range(20):
        logger.info("n %d", i)
    assert time.monotonic() - started < 1.0  # no emit waited for the transport
    assert handler.counters.dropped_by == {"queue_full": 15}
    assert handler.counters.queued == 5
    gate.opened.set()
    assert handler.drain(30)
    assert handler.counters.sent == 6
    handler.close()


def test_block_policy_waits_for_room() -> None:
    gate = Gate()
    handler = make_handler(gate, queue_size=2, batch_size=1, on_full="block", block_timeout=30)
    logger = _logger(handler)
    logger.info("in flight")
    assert gate.entered.wait(30)
    logger.info("q1")
    logger.info("q2")
    blocked = threading.Thread(target=logger.info, args=("third",))
    blocked.start()
    gate.opened.set()  # room comes while (or before) the third emit waits
    blocked.join(30)
    assert not blocked.is_alive()
    assert handler.drain(30)
    assert handler.counters.sent == 4 and handler.counters.dropped == 0
    handler.close()


def test_block_policy_gives_up_after_block_timeout() -> None:
    gate = Gate()
    handler = make_handler(
        gate,
        queue_size=1,
        batch_size=1,
        on_full="block",
        block_timeout=0.2,
        on_error=lambda _p: None,
    )
    logger = _logger(handler)
    logger.info("in flight")
    assert gate.entered.wait(30)
    logger.info("queued")
    started = time.monotonic()
    logger.info("waits, then dropped")
    assert time.monotonic() - started >= 0.2
    assert handler.counters.dropped_by == {"queue_full": 1}
    gate.opened.set()
    handler.close()


# --- batching --------------------------------------------------------------------------------


def test_batches_by_size() -> None:
    transport = Scripted([])
    handler = make_handler(transport, batch_size=10, flush_interval=60)
    logger = _logger(handler)
    for i in range(25):
        logger.info("n %d", i)
    _until(lambda: len(transport.attempts) == 2)  # two full batches, the rest lingers
    assert [len(a) for a in transport.attempts] == [10, 10]
    handler.close()  # the close sends the rest at once
    assert [len(a) for a in transport.attempts] == [10, 10, 5]


def test_batches_by_interval() -> None:
    transport = Scripted([])
    handler = make_handler(transport, batch_size=100, flush_interval=0.05)
    _logger(handler).info("alone")
    _until(lambda: len(transport.attempts) == 1)  # no flush asked: the interval sent it
    handler.close()


# --- never raising ---------------------------------------------------------------------------


class Broken(Collector):
    def send(self, batch: object) -> list[object]:  # type: ignore[override]
        raise RuntimeError("a bug in a transport")


def test_nothing_raises_into_the_application() -> None:
    def angry(_problem: object) -> None:
        raise RuntimeError("the callback fails too")

    handler = make_handler(Broken(), retry_for=0.05, on_error=angry)
    logger = _logger(handler)
    logger.info("%d", "not a number")
    logger.info("extra", extra={"bad": object()})
    try:
        raise OSError("disk")
    except OSError:
        logger.exception("with traceback")
    assert handler.drain(30)
    assert handler.counters.dropped_by == {"undeliverable": 3}
    handler.close()
    logger.info("after close")
    assert handler.counters.dropped_by == {"undeliverable": 3, "closed": 1}
    handler.close()  # idempotent


# --- spool ---------------------------------------------------------------------------------


def test_spool_keeps_what_cannot_be_sent_and_resends_oldest_first(tmp_path: Path) -> None:
    transport = Scripted([retryable("down")] * 3)
    handler = make_handler(
        transport, batch_size=2, retry_for=0.01, spool_dir=tmp_path, on_error=lambda _p: None
    )
    logger = _logger(handler)
    for i in range(6):
        logger.info("n %d", i)
    assert handler.drain(30)
    _until(lambda: handler.counters.sent == 6)
    payloads = [e.data for e in transport.entries]
    assert [p.split(b'"payload":"')[1].split(b'"')[0] for p in payloads] == [
        f"n {i}".encode() for i in range(6)
    ]
    assert handler.counters.spooled >= 2
    assert not Spool(tmp_path, 1 << 20).files()
    handler.close()


def test_spool_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    transport = Scripted([retryable("down")] * 1000)
    handler = make_handler(
        transport,
        batch_size=1,
        retry_for=0.01,
        spool_dir=tmp_path,
        spool_max_bytes=1000,
        on_error=lambda _p: None,
    )
    logger = _logger(handler)
    for i in range(20):
        logger.info("a log of some size %d", i)
    handler.close(timeout=0.5)
    counters = handler.counters
    assert counters.spooled + counters.dropped_by.get("spool_full", 0) == 20
    assert 0 < counters.spooled < 20
    assert Spool(tmp_path, 1000).size() <= 1000


def test_close_with_the_transport_down_spools_the_queue(tmp_path: Path) -> None:
    gate = Gate()  # never opened: the one send in flight hangs
    handler = make_handler(gate, batch_size=1, spool_dir=tmp_path, on_error=lambda _p: None)
    logger = _logger(handler)
    for i in range(5):
        logger.info("n %d", i)
    assert gate.entered.wait(30)
    handler.close(timeout=0.1)
    spool = Spool(tmp_path, 1 << 20)
    lines = b"".join(p.read_bytes() for p in spool.files()).splitlines()
    assert len(lines) == 5  # the hanging one too: if it arrives after all, its key dedups
    gate.opened.set()


def test_an_unknown_transport_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="send"):
        LMSHandler(service_name="x", transport=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_full"):
        make_handler(Collector(), on_full="wait")
    with pytest.raises(ValueError, match="queue_size must be a positive number"):
        make_handler(Collector(), queue_size=0)


class FileSink(Collector):
    """Appends each log's key to a file: what a forked child sent, readable by the parent."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def send(self, batch: object) -> list[object]:  # type: ignore[override]
        with self.path.open("a") as out:
            out.writelines(f"{e.key}\n" for e in batch)  # type: ignore[attr-defined]
        return []


def test_a_forked_child_sends_with_its_own_thread_and_keys(tmp_path: Path) -> None:
    import os

    sink = FileSink(tmp_path / "sent")
    handler = make_handler(sink)
    logger = _logger(handler)
    logger.info("parent")
    assert handler.drain(30)
    pid = os.fork()
    if pid == 0:  # the child: without a new thread nothing would be sent
        code = 1
        try:
            for i in range(3):
                logger.info("child %d", i)
            code = 0 if handler.drain(30) and handler.counters.sent == 3 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    handler.close()
    parent_key, *child_keys = (tmp_path / "sent").read_text().split()
    assert len(child_keys) == 3
    prefix = parent_key.rsplit("-", 1)[0]
    assert all(not key.startswith(prefix) for key in child_keys)


def test_http_transport_checks_its_arguments() -> None:
    from lms_client import HTTPTransport

    with pytest.raises(ValueError, match="http:// or https://"):
        HTTPTransport(url="lms:3000")
    with pytest.raises(ValueError, match="token must be printable ASCII"):
        HTTPTransport(url="http://lms:3000", token="abc\r\nX-Evil: 1")
    assert HTTPTransport(url="http://lms:3000/").endpoint == "http://lms:3000/v1/logs"
