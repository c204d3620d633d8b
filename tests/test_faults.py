"""Fault injection: `lms mon` stores every published log exactly once, whatever breaks.

Every scenario runs real `lms mon` subprocesses (tests/lms_process.py) against the real
emulator and MariaDB, breaks something (SIGKILL, SIGSTOP, SIGTERM, TCP proxies that cut,
blackhole or slow down the database or Pub/Sub: tests/proxy.py), lets the monitor recover,
and ends with the same full check (`Scenario.verify`):

* per (service, severity): published == COUNT(*) of service_logs == SUM(count) of
  service_severity; and per message id, the stored service and severity are the published ones;
* every invalid message published is in rejected_messages, once, with the reason declared where
  the message was made (tests/poison.py), its original size, the SHA-256 of its whole body and
  (the first 16 KiB of) its exact bytes; a message hypothesis invented, whose fate nobody
  declared, is stored or rejected, once;
* no message id is stored twice, nothing is stored that was not published;
* the subscription is drained (lms.pubsub.subscription_backlog), after the monitors stopped
  with SIGTERM and exit code 0.

Each scenario has a `fast` variant in the default suite and a `full` one (the sizes of issue 4:
50,000 messages and 5+ SIGKILLs, 20 s outages, a 100,000-message backlog) marked `slow`, run
by `make faults` (`pytest -m slow`). Each run merges a summary per scenario into the file
$FAULTS_REPORT names (`make faults`: .run/faults.json, from which docs/reliability.md copies its
table), else into faults.json of pytest's temporary directory: tests write nothing into the repo.
LMS_FAULTS_SETTINGS (JSON) applies settings to every monitor, e.g. '{"pull_mode": "streaming"}'.

The subscription is created with ACK_DEADLINE=10 (the minimum), so messages held by a killed
process come back after 10 s, which keeps the scenarios short.

Scenarios 8-10 are HTTP ingestion's: a real `lms api` child between clients and Pub/Sub
(tests/http_load.py: clients that send ids and retry as a good shipper does; the bad-body
corpus of tests/bad_bodies.py), checked by the clients' ids (`verify_http`). They are `slow`
in both variants.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomysql
import httpx
import pytest

from lms.devtools.backlog import subscription_backlog
from lms.devtools.monitor_process import MonitorProcess
from lms.devtools.ports import free_port
from lms.devtools.verify import check_consistency
from lms.domain.record import Reason
from lms.ingest.sources.pubsub.keys import CLIENT_PREFIX
from lms.settings import Settings
from lms.store.connection import connect_kwargs
from lms.store.migrations import migration_files
from lms.store.writer import MAX_REJECTED_DATA
from tests.bad_bodies import ENDPOINTS, corpus
from tests.helpers import (
    SettingsFactory,
    db_query,
    ensure_resources,
    publish,
    wait_until,
)
from tests.http_load import RetryingClients, SendStats, keyed_logs, raw_post
from tests.lms_process import (  # noqa: F401  (lms_mon_fixture: the `lms_mon` fixture)
    LmsFactory,
    MetricsSampler,
    RssSampler,
    lms_mon_fixture,
)
from tests.poison import (
    BAD_JSON,
    CATALOGUE,
    UNDECLARED,
    Message,
    Rejected,
    Stored,
    catalogue_messages,
    hypothesis_messages,
    valid_log,
)
from tests.proxy import ProxyFactory, TcpProxy

pytestmark = pytest.mark.integration

ACK_DEADLINE = 10
# How the monitor's log lines begin (structlog `event`), for the checks that read them.
DB_WRITE_FAILED = "database write failed"
PULL_FAILED = "pull failed"
ACK_FAILED = "ack failed"
LEASE_FAILED = "lease extension failed"

# Settings applied to every monitor of every scenario, to run the whole suite in another
# configuration, e.g. LMS_FAULTS_SETTINGS='{"pull_mode": "streaming", "pullers": 4}'.
SUITE_OVERRIDES: dict[str, Any] = json.loads(os.environ.get("LMS_FAULTS_SETTINGS") or "{}")

VARIANTS = [
    pytest.param("fast", id="fast"),
    pytest.param("full", id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1200)]),
]


def sizes(variant: str, fast: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    return fast if variant == "fast" else full


# --- what was published -----------------------------------------------------------------


@dataclass
class Ledger:
    """Every message the test published, by message id, with the outcome declared for it."""

    valid: dict[str, tuple[str, str]] = field(default_factory=dict)
    """message id -> (service_name, severity) it must be stored with."""
    invalid: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    """message id -> (reason, size, digests) it must be rejected with: the MD5 of the kept
    prefix (MAX_REJECTED_DATA) and the SHA-256 of the whole body, as `md5:sha256`."""
    undeclared: dict[str, tuple[int, str]] = field(default_factory=dict)
    """message id -> (size, digests) of a message stored or rejected, either way."""

    @property
    def published(self) -> int:
        return len(self.valid) + len(self.invalid) + len(self.undeclared)

    async def publish(
        self,
        settings: Settings,
        messages: list[Message],
        attributes: dict[str, str] | None = None,
    ) -> None:
        """Publish the bodies, and note under each message id the outcome declared for it."""
        ids = await publish(settings, [body for body, _outcome in messages], attributes)
        for message_id, (body, outcome) in zip(ids, messages, strict=True):
            digest = (
                hashlib.md5(body[:MAX_REJECTED_DATA]).hexdigest()
                + ":"
                + hashlib.sha256(body).hexdigest()
            )
            if isinstance(outcome, Stored):
                self.valid[message_id] = (outcome.service_name, outcome.severity)
            elif isinstance(outcome, Rejected):
                self.invalid[message_id] = (outcome.reason.value, len(body), digest)
            else:
                self.undeclared[message_id] = (len(body), digest)


class SteadyPublisher:
    """Publishes `messages` at `rate` per second in the background; can pause between chunks."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        messages: list[Message],
        rate: float,
        chunk: int = 100,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.messages = messages
        self.rate = rate
        self.chunk = chunk
        self.sent = 0
        self._running = asyncio.Event()
        self._running.set()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> SteadyPublisher:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        started = time.monotonic()
        paused_for = 0.0
        while self.sent < len(self.messages):
            if not self._running.is_set():
                self._idle.set()
                paused_at = time.monotonic()
                await self._running.wait()
                paused_for += time.monotonic() - paused_at
                self._idle.clear()
            delay = started + paused_for + self.sent / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = self.messages[self.sent : self.sent + self.chunk]
            await self.ledger.publish(self.settings, chunk)
            self.sent += len(chunk)
        self._idle.set()

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def pause(self) -> None:
        """Return once no publish is in flight (and none starts until `resume`)."""
        self._running.clear()
        assert self._task is not None
        waiter = asyncio.ensure_future(self._idle.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done():
            self._task.result()

    def resume(self) -> None:
        self._running.set()

    async def wait(self) -> None:
        assert self._task is not None
        self.resume()
        await self._task


# --- one scenario run -----------------------------------------------------------------------


class Scenario:
    """The monitors, the ledger and the faults of one test, and the final check."""

    def __init__(
        self,
        name: str,
        variant: str,
        settings: SettingsFactory,
        lms_mon: LmsFactory,
        report: Path,
        **overrides: Any,
    ) -> None:
        self.name = name
        self.variant = variant
        self._settings = settings
        self._lms_mon = lms_mon
        self.report = report
        self.overrides = {"ack_deadline": ACK_DEADLINE, **overrides, **SUITE_OVERRIDES}
        self.base = settings(**self.overrides)
        self.ledger = Ledger()
        self.processes: list[MonitorProcess] = []
        self.faults: list[str] = []
        self.last_fault = 0.0
        self.started = time.monotonic()
        self.notes: dict[str, Any] = {}

    def settings(self, **overrides: Any) -> Settings:
        return self._settings(**{**self.overrides, **overrides})

    async def setup(self) -> None:
        await ensure_resources(self.base)

    def mon(self, name: str = "mon", command: str = "mon", **overrides: Any) -> MonitorProcess:
        process = self._lms_mon(self.settings(**overrides), name=name, command=command)
        self.processes.append(process)
        return process

    def fault(self, what: str) -> None:
        self.faults.append(f"{time.monotonic() - self.started:.1f}s {what}")
        self.last_fault = time.monotonic()

    async def handled(self) -> int:
        """Messages stored or rejected so far."""
        ((count,),) = await db_query(
            self.base,
            "SELECT (SELECT COUNT(*) FROM service_logs) + (SELECT COUNT(*) FROM rejected_messages)",
        )
        return int(count)

    async def wait_handled(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until every published message is stored or rejected (monitors still running)."""

        async def done() -> bool:
            for process in self.processes:
                if process.returncode not in (None, 0, -9):
                    raise AssertionError(f"{process.name} crashed\n{process.tail()}")
            return await self.handled() >= self.ledger.published

        try:
            await wait_until(done, timeout=timeout, interval=0.5, message="every message handled")
        except AssertionError:
            tails = "\n".join(p.tail(15) for p in self.processes)
            raise AssertionError(
                f"{await self.handled()} of {self.ledger.published} handled\n{tails}"
            ) from None

    async def settle_and_stop(self) -> None:
        """Let redeliveries of what killed monitors held arrive and be ignored, then SIGTERM.

        A message leased to a killed (or stopped) monitor comes back only when its lease
        expires, ACK_DEADLINE after its last extension: wait that long after the last fault,
        then until the live monitors have pulled nothing for 2 s.
        """
        await asyncio.sleep(max(0.0, self.last_fault + ACK_DEADLINE + 3 - time.monotonic()))
        live = [p for p in self.processes if p.alive]
        while True:
            before = sum(p.received for p in live)
            await asyncio.sleep(2)
            if sum(p.received for p in live) == before:
                break
        for process in live:
            started = time.monotonic()
            code = await process.stop(timeout=60)
            assert code == 0, process.tail()
            self.notes.setdefault("sigterm_exit_seconds", []).append(
                round(time.monotonic() - started, 2)
            )

    def events(self, name: str) -> list[dict[str, Any]]:
        return [event for p in self.processes for event in p.events(name)]

    def matching(self, prefix: str) -> list[dict[str, Any]]:
        return [event for p in self.processes for event in p.matching(prefix)]

    async def verify(self, **extra: Any) -> dict[str, Any]:
        """The full check; records the summary (to the faults report) before asserting."""
        s = self.base
        logs = await db_query(s, "SELECT message_id, service_name, severity FROM service_logs")
        rejected = await db_query(
            s,
            "SELECT message_id, reason, detail, data_size,"
            " CONCAT(MD5(data), ':', CAST(data_sha256 AS CHAR)) FROM rejected_messages",
        )
        backlog = await subscription_backlog(s)

        valid, invalid, undeclared = self.ledger.valid, self.ledger.invalid, self.ledger.undeclared
        stored = Counter(row[0] for row in logs)
        stored_as = {mid: (svc, str(sev)) for mid, svc, sev in logs}
        rejected_ids = Counter(row[0] for row in rejected)
        lost_valid = [mid for mid in valid if mid not in stored]
        lost_invalid = [mid for mid in invalid if mid not in rejected_ids]
        handled = set(stored) | set(rejected_ids)
        lost_undeclared = [mid for mid in undeclared if mid not in handled]
        stored_and_rejected = [mid for mid in stored if mid in rejected_ids]
        unexpected = [mid for mid in stored if mid not in valid and mid not in undeclared]
        unexpected_rejected = [
            mid for mid in rejected_ids if mid not in invalid and mid not in undeclared
        ]
        mismatched = [
            (mid, (svc, sev), valid[mid])
            for mid, svc, sev in logs
            if mid in valid and valid[mid] != (svc, sev)
        ]
        duplicate_rejected = sum(count - 1 for count in rejected_ids.values())

        # Per (service, severity): the declared pairs, and the pair each stored message whose
        # fate nobody declared was stored as (once per message id, so a duplicate still shows).
        published_by = Counter(valid.values())
        published_by.update(stored_as[mid] for mid in undeclared if mid in stored_as)
        consistency = await check_consistency(s, published_by)

        reasons = {reason.value for reason in Reason}

        def rejected_wrongly(mid: str, reason: str, detail: str, size: int, digest: str) -> bool:
            """Not as declared, or (undeclared) not a known reason; always: a detail, the
            original size and bytes. Rejections of nothing published are `unexpected`."""
            if mid in invalid:
                return (reason, int(size), digest) != invalid[mid] or not detail
            if mid in undeclared:
                kept = (int(size), digest) == undeclared[mid]
                return reason not in reasons or not kept or not detail
            return False

        wrong_rejection = [
            (mid, reason, detail, size, invalid.get(mid, undeclared.get(mid)))
            for mid, reason, detail, size, digest in rejected
            if rejected_wrongly(mid, reason, detail, size, digest)
        ]

        batches = self.events("batch committed")
        summary: dict[str, Any] = {
            "scenario": self.name,
            "variant": self.variant,
            "published": self.ledger.published,
            "published_valid": len(valid),
            "published_invalid": len(invalid),
            "published_undeclared": len(undeclared),
            "undeclared_rejected": sum(mid in rejected_ids for mid in undeclared),
            "stored": len(stored) - len(unexpected),
            "rejected": len(rejected_ids) - len(unexpected_rejected),
            "lost": len(lost_valid) + len(lost_invalid) + len(lost_undeclared),
            "duplicated": consistency.duplicate_rows
            + duplicate_rejected
            + consistency.overcounted
            + len(stored_and_rejected),
            "unexpected": len(unexpected) + len(unexpected_rejected),
            "backlog_after": backlog,
            "pairs": len(consistency.pairs),
            "pair_mismatches": len(consistency.mismatches),
            "batches": len(batches),
            "redeliveries_ignored": sum(int(b["duplicates"]) for b in batches),
            "db_write_failures": len(self.matching(DB_WRITE_FAILED)),
            "processes_started": sum(p.generation for p in self.processes),
            "faults": self.faults,
            "seconds": round(time.monotonic() - self.started, 1),
            "suite_settings": SUITE_OVERRIDES,
            "finished_at": datetime.now().isoformat(timespec="seconds"),
            **self.notes,
            **extra,
        }
        record_summary(self.report, summary)
        print(json.dumps(summary, indent=1, ensure_ascii=False))

        assert not lost_valid, f"{len(lost_valid)} valid logs lost, e.g. {lost_valid[:5]}"
        assert not lost_invalid, f"{len(lost_invalid)} invalid ones lost: {lost_invalid[:5]}"
        assert not lost_undeclared, f"{len(lost_undeclared)} invented ones lost"
        assert not stored_and_rejected, f"stored and rejected: {stored_and_rejected[:5]}"
        assert not unexpected, f"stored but not published as valid: {unexpected[:5]}"
        assert not unexpected_rejected, f"rejected but valid: {unexpected_rejected[:5]}"
        assert not mismatched, mismatched[:5]
        assert consistency.duplicate_rows == duplicate_rejected == 0
        assert consistency.ok, consistency.table()
        assert not wrong_rejection, wrong_rejection[:3]
        assert backlog == 0, f"{backlog} messages left in the subscription"
        return summary


ScenarioFactory = Callable[..., Scenario]


@pytest.fixture(scope="session")
def faults_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the scenarios' summaries go: $FAULTS_REPORT, else pytest's temporary directory."""
    named = os.environ.get("FAULTS_REPORT")
    return Path(named) if named else tmp_path_factory.getbasetemp() / "faults.json"


@pytest.fixture
def scenario(
    settings: SettingsFactory, lms_mon: LmsFactory, faults_report: Path
) -> ScenarioFactory:
    """`scenario(name, variant, **overrides) -> Scenario` of this test."""

    def make(name: str, variant: str, **overrides: Any) -> Scenario:
        return Scenario(name, variant, settings, lms_mon, faults_report, **overrides)

    return make


def record_summary(path: Path, summary: dict[str, Any]) -> None:
    """Merge this scenario's summary into the JSON file the docs table is made from.

    Under an exclusive lock: pytest-xdist workers finish scenarios at the same time, and a
    read-modify-write of one would drop the other's summary.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            everything = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            everything = {}
        key = f"{summary['scenario']}[{summary['variant']}]"
        if summary.get("suite_settings"):
            key += " " + json.dumps(summary["suite_settings"], sort_keys=True)
        everything[key] = summary
        path.write_text(
            json.dumps(everything, indent=1, ensure_ascii=False, sort_keys=True) + "\n",
            encoding="utf-8",
        )


def valid_logs(seed: int, count: int, start: int = 0) -> list[Message]:
    rng = random.Random(seed)
    return [valid_log(rng, start + index) for index in range(count)]


def event_time(event: dict[str, Any]) -> float:
    """Unix time of a log line (structlog's ISO timestamp, UTC)."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def first_after(events: list[dict[str, Any]], moment: float) -> float | None:
    """Seconds from `moment` (Unix time) to the first event after it."""
    times = sorted(event_time(e) for e in events if event_time(e) > moment)
    return round(times[0] - moment, 2) if times else None


async def mysql_proxy(tcp_proxy: ProxyFactory, settings: Settings) -> TcpProxy:
    return await tcp_proxy(settings.mysql_host, settings.mysql_port)


async def pubsub_proxy(tcp_proxy: ProxyFactory, settings: Settings) -> TcpProxy:
    assert settings.pubsub_emulator_host
    host, port = settings.pubsub_emulator_host.rsplit(":", 1)
    return await tcp_proxy(host, int(port))


class TransactionWatch:
    """Sees, from the database, whether a monitor's write transaction is open or committed.

    Rows a transaction inserted are visible at READ UNCOMMITTED before COMMIT and at READ
    COMMITTED after it, so comparing MAX(id) at both levels tells the two moments apart.
    (information_schema.innodb_trx would be simpler, but InnoDB refreshes it only every
    100 ms, longer than a transaction of a small batch.)
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dirty: aiomysql.Connection | None = None
        self._clean: aiomysql.Connection | None = None

    async def __aenter__(self) -> TransactionWatch:
        kwargs = {**connect_kwargs(self.settings, self.settings.mysql_database)}
        self._dirty = await aiomysql.connect(**{**kwargs, "autocommit": True})
        self._clean = await aiomysql.connect(**{**kwargs, "autocommit": True})
        for conn, level in ((self._dirty, "READ UNCOMMITTED"), (self._clean, "READ COMMITTED")):
            async with conn.cursor() as cur:
                await cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in (self._dirty, self._clean):
            if conn is not None:
                conn.close()

    @staticmethod
    async def _max_id(conn: aiomysql.Connection | None) -> int:
        assert conn is not None
        async with conn.cursor() as cur:
            await cur.execute("SELECT COALESCE(MAX(id), 0) FROM service_logs")
            ((value,),) = await cur.fetchall()
        return int(value)

    async def state(self) -> tuple[int, int]:
        """(largest id inserted, largest id committed): dirty first, so a commit between the
        two reads shows as committed, never as a transaction that is not there."""
        dirty = await self._max_id(self._dirty)
        return dirty, await self._max_id(self._clean)

    async def in_transaction(self, timeout: float) -> int | None:  # noqa: ASYNC109
        """Wait until rows are inserted but not committed; the largest such id, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dirty, clean = await self.state()
            if dirty > clean:
                return dirty
            await asyncio.sleep(0.001)
        return None

    async def committed(self, row_id: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until the row `row_id` is committed (or gone: rolled back)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dirty, clean = await self.state()
            if clean >= row_id or dirty < row_id:
                return clean >= row_id
            await asyncio.sleep(0.001)
        return False


# --- 1. SIGKILL at random moments -------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
async def test_sigkill_at_random_moments(
    variant: str, scenario: ScenarioFactory, tcp_proxy: ProxyFactory
) -> None:
    """SIGKILL `lms mon` repeatedly while it works (at random, inside a write transaction,
    and just after a commit, before the ack), restarting it each time."""
    size = sizes(
        variant,
        fast={"messages": 5_000, "rate": 150, "kills": 5, "batchsize": 200},
        full={"messages": 50_000, "rate": 400, "kills": 10, "batchsize": 500},
    )
    run = scenario("1 SIGKILL x N", variant)
    await run.setup()
    # A little latency on both links widens the windows the kills aim at (inside the
    # transaction; between COMMIT and the ack reaching Pub/Sub).
    db = await mysql_proxy(tcp_proxy, run.base)
    db.latency = 0.01
    ps = await pubsub_proxy(tcp_proxy, run.base)
    ps.latency = 0.03
    overrides = {
        "mysql_port": db.port,
        "pubsub_emulator_host": f"127.0.0.1:{ps.port}",
        "batchsize": size["batchsize"],
        "max_outstanding": 2 * size["batchsize"],
        "flushinterval": 1,
    }
    mon = run.mon(**overrides)
    await mon.wait_started()
    publisher = SteadyPublisher(
        run.base, run.ledger, valid_logs(1, size["messages"]), size["rate"]
    ).start()
    rng = random.Random(1)
    # Spread the kills over the publishing time (each restart costs about a second).
    period = size["messages"] / size["rate"] / size["kills"]
    modes = ["random", "in transaction", "after commit"]
    kills: Counter[str] = Counter()
    async with TransactionWatch(run.base) as watch:
        for index in range(size["kills"]):
            mode = modes[index % len(modes)]
            with contextlib.suppress(AssertionError):  # none if nothing is left to do
                await mon.wait_for(
                    "batch committed", count=mon.count("batch committed") + 1, timeout=5
                )
            await asyncio.sleep(rng.uniform(0.0, 0.6) * period)
            hit = True
            if mode == "in transaction":
                hit = await watch.in_transaction(timeout=5) is not None
            elif mode == "after commit":
                row = await watch.in_transaction(timeout=5)
                hit = row is not None and await watch.committed(row, timeout=5)
            mon.sigkill()
            assert await mon.wait(10) == -9
            label = mode if hit else "random"
            run.fault(f"SIGKILL {label}")
            kills[label] += 1
            await asyncio.sleep(rng.uniform(0, 0.5))
            mon.start()
            await mon.wait_started()
    await publisher.wait()
    await run.wait_handled(timeout=120)
    await run.settle_and_stop()
    await run.verify(kills=dict(kills))
    assert sum(kills.values()) >= 5
    assert kills["in transaction"] >= 1


async def test_sigkill_during_startup_migration(scenario: ScenarioFactory) -> None:
    """SIGKILL `lms mon` while its first start-up migrates the schema, between two DDL
    statements of one migration file (DDL commits statement by statement), then at a random
    moment of the next start-up: the restarted monitor completes the schema and works."""
    run = scenario("1b SIGKILL during migration", "fast")
    await run.setup()
    await run.ledger.publish(run.base, valid_logs(11, 2_000))
    s = run.base
    kwargs = {**connect_kwargs(s, None), "autocommit": True}
    conn = await aiomysql.connect(**kwargs)
    try:

        async def scalar(sql: str) -> int:
            async with conn.cursor() as cur:
                await cur.execute(sql, (s.mysql_database,))
                ((value,),) = await cur.fetchall()
            return int(value)

        # The first statement of 002 adds resource_id; the version is recorded after the last.
        column = (
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = 'service_logs' AND column_name = 'resource_id'"
        )
        recorded = (
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name = 'schema_migrations'"
        )
        mon = run.mon(batchsize=500, flushinterval=0.5)
        deadline = time.monotonic() + 60
        while not await scalar(column):
            assert time.monotonic() < deadline and mon.alive, mon.tail()
            await asyncio.sleep(0.001)
        mon.sigkill()
        await mon.wait(10)
        run.fault("SIGKILL after the first DDL statement of a migration")
        async with conn.cursor() as cur:
            await cur.execute(f"SELECT version FROM `{s.mysql_database}`.schema_migrations")
            versions_at_kill = sorted(row[0] for row in await cur.fetchall())
        assert await scalar(recorded)

        mon.start()
        await asyncio.sleep(random.Random(11).uniform(0.2, 1.5))
        if mon.alive and not mon.events("monitor started"):
            mon.sigkill()
            await mon.wait(10)
            run.fault("SIGKILL during the next start-up")
            mon.start()
        await mon.wait_for("monitor started", timeout=60)
    finally:
        conn.close()
    await run.wait_handled(timeout=60)
    await run.settle_and_stop()
    versions = sorted(row[0] for row in await db_query(s, "SELECT version FROM schema_migrations"))
    migrations = [script.name for script in migration_files()]
    skipped = mon.matching("migration statement already applied")
    await run.verify(
        versions_at_kill=versions_at_kill,
        interrupted_migration=versions_at_kill != migrations,
        statements_skipped_on_restart=len(skipped),
    )
    assert versions == migrations


# --- 2. The database cut, then blackholed ------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
async def test_database_cut_and_blackholed(
    variant: str, scenario: ScenarioFactory, tcp_proxy: ProxyFactory
) -> None:
    """The DB connection is cut (refused, open ones reset), later blackholed (a hung query
    must time out after DB_TIMEOUT, roll back and be retried, not hang)."""
    size = sizes(
        variant,
        fast={"outage": 5, "db_timeout": 2},
        full={"outage": 20, "db_timeout": 5},
    )
    outage = size["outage"]
    run = scenario("2 DB cut + blackhole", variant)
    await run.setup()
    db = await mysql_proxy(tcp_proxy, run.base)
    mon = run.mon(
        mysql_port=db.port,
        db_timeout=size["db_timeout"],
        batchsize=500,
        max_outstanding=1000,
        flushinterval=0.5,
    )
    await mon.wait_started()
    rate = 150
    publisher = SteadyPublisher(
        run.base, run.ledger, valid_logs(2, int(rate * (2 * outage + 14))), rate
    ).start()
    await asyncio.sleep(4)

    failures_before = len(mon.matching(DB_WRITE_FAILED))
    run.fault("DB cut")
    await db.cut(reset=True)
    await asyncio.sleep(outage)
    cut_failures = mon.matching(DB_WRITE_FAILED)[failures_before:]
    restored_cut = time.time()
    await db.restore()
    run.fault("DB restored")
    assert cut_failures, "no failed write logged while the database was cut"
    await mon.wait_for("batch committed", where=lambda e: event_time(e) > restored_cut, timeout=60)

    await asyncio.sleep(4)
    failures_before = len(mon.matching(DB_WRITE_FAILED))
    run.fault("DB blackholed")
    await db.blackhole()
    await asyncio.sleep(outage)
    hole_failures = mon.matching(DB_WRITE_FAILED)[failures_before:]
    restored_hole = time.time()
    await db.restore()
    run.fault("DB restored")
    assert any("timed out" in e["error"] for e in hole_failures), (
        f"no write timed out while the database was blackholed: {hole_failures}"
    )
    await mon.wait_for("batch committed", where=lambda e: event_time(e) > restored_hole, timeout=60)
    assert mon.generation == 1 and mon.alive, mon.tail()

    await publisher.wait()
    await run.wait_handled(timeout=120)
    await run.settle_and_stop()
    commits = mon.events("batch committed")
    await run.verify(
        outage_seconds=outage,
        failed_writes_during_cut=len(cut_failures),
        timeouts_during_blackhole=sum("timed out" in e["error"] for e in hole_failures),
        first_commit_after_cut_s=first_after(commits, restored_cut),
        first_commit_after_blackhole_s=first_after(commits, restored_hole),
    )


async def test_database_blackholed_at_startup(
    scenario: ScenarioFactory, tcp_proxy: ProxyFactory
) -> None:
    """A database that accepts connections and never answers at start-up is waited for, with
    "database not reachable" logs, not hung on silently; once it answers, nothing is lost."""
    run = scenario("2b DB blackholed at start-up", "fast")
    await run.setup()
    db = await mysql_proxy(tcp_proxy, run.base)
    await db.blackhole()
    run.fault("DB blackholed")
    mon = run.mon(mysql_port=db.port, db_timeout=2, batchsize=500, flushinterval=0.5)
    await run.ledger.publish(run.base, valid_logs(22, 1_000))
    waiting = await mon.wait_for("database not reachable, waiting", count=2, timeout=30)
    assert not mon.events("monitor started")
    await db.restore()
    run.fault("DB restored")
    await mon.wait_started(timeout=30)
    await run.wait_handled(timeout=60)
    await run.settle_and_stop()
    await run.verify(waiting_logs=len(waiting), waiting_error=waiting[0].get("error"))


# --- 3. The Pub/Sub connection cut --------------------------------------------------------------

RECOVERY_SECONDS = 30
"""Seconds from the link's return to the first pull: the pull retry's backoff (at most 10 s,
with jitter), plus the channel's reconnect backoff (at most 5 s) when the retry finds it
still waiting, with room to spare on a loaded machine; a stream found dead by its health
check (10 s of silence, a 5 s probe) during the outage is reopened within that too."""


@pytest.mark.parametrize("pull_mode", ["pull", "streaming"])
@pytest.mark.parametrize("variant", VARIANTS)
async def test_pubsub_cut_and_blackholed(
    variant: str, pull_mode: str, scenario: ScenarioFactory, tcp_proxy: ProxyFactory
) -> None:
    """The Pub/Sub connection is cut (refused, open ones reset) mid-run, later blackholed
    (nothing answers); the subscriber retries and reconnects by itself, and acks or lease
    extensions that failed meanwhile only cause redeliveries, which are ignored. Intake is
    back within RECOVERY_SECONDS of the link, in both PULL_MODEs: a stream broken by the cut
    or gone silent in the blackhole is replaced, not left waiting for gRPC's timers."""
    outage = sizes(variant, fast={"outage": 5}, full={"outage": 20})["outage"]
    name = "3 Pub/Sub cut + blackhole" + ("" if pull_mode == "pull" else ", streaming")
    run = scenario(name, variant, pull_mode=pull_mode)
    await run.setup()
    ps = await pubsub_proxy(tcp_proxy, run.base)
    # FLUSHINTERVAL 4 s: when the link breaks, the monitor holds messages, so it must commit
    # them and fail to ack them, and fail to extend their leases, while broken.
    mon = run.mon(
        pubsub_emulator_host=f"127.0.0.1:{ps.port}",
        batchsize=2000,
        max_outstanding=4000,
        flushinterval=4,
    )
    await mon.wait_started()
    rate = 150
    publisher = SteadyPublisher(
        run.base, run.ledger, valid_logs(3, int(rate * (2 * outage + 30))), rate
    ).start()
    recovery: dict[str, float | None] = {}
    for fault in ("cut", "blackhole"):
        await asyncio.sleep(4)
        run.fault(f"Pub/Sub {fault}")
        if fault == "cut":
            await ps.cut(reset=True)
        else:
            await ps.blackhole()
        await asyncio.sleep(outage)
        restored = time.time()
        await ps.restore()
        run.fault("Pub/Sub restored")
        await mon.wait_for(
            "pulled", where=lambda e, t=restored: event_time(e) > t, timeout=RECOVERY_SECONDS
        )
        recovery[fault] = first_after(mon.events("pulled"), restored)
    assert mon.generation == 1 and mon.alive, mon.tail()
    failed_pulls = len(mon.matching(PULL_FAILED))
    assert failed_pulls, "no failed pull logged while Pub/Sub was cut"

    await publisher.wait()
    # What the emulator sent into the blackhole comes back only as its ack deadline lapses,
    # in rounds of a stream response (100 messages) that can be 30 s apart: seen taking more
    # than 120 s after a busy run, still arriving.
    await run.wait_handled(timeout=180)
    await run.settle_and_stop()
    await run.verify(
        outage_seconds=outage,
        failed_pulls=failed_pulls,
        failed_acks=len(mon.matching(ACK_FAILED)),
        failed_lease_extensions=len(mon.matching(LEASE_FAILED)),
        streams_found_dead=sum(
            "no answer from Pub/Sub" in e.get("error", "") for e in mon.matching(PULL_FAILED)
        ),
        first_pull_after_cut_s=recovery["cut"],
        first_pull_after_blackhole_s=recovery["blackhole"],
    )


# --- 4. Two replicas, leases longer than the ack deadline, forced redeliveries ----------------


@pytest.mark.parametrize("variant", VARIANTS)
async def test_two_replicas_with_lease_extension_and_redeliveries(
    variant: str, scenario: ScenarioFactory
) -> None:
    """Two monitors share one subscription. FLUSHINTERVAL (15 s) > ack deadline (10 s), so
    messages are held past the deadline and only lease extension keeps them from being
    redelivered. Then forced redeliveries: one monitor is frozen (SIGSTOP) past the deadline
    so the other gets its messages while it still holds them (both write them: the second
    write must be ignored), later the other is SIGKILLed and restarted."""
    size = sizes(
        variant,
        fast={"first": 2_000, "messages": 3_000, "rate": 100},
        full={"first": 5_000, "messages": 20_000, "rate": 200},
    )
    run = scenario("4 two replicas", variant, batchsize=50_000, flushinterval=15)
    await run.setup()
    a, b = run.mon("a"), run.mon("b")
    await a.wait_started()
    await b.wait_started()

    # Phase 1: a block of messages is held for FLUSHINTERVAL (15 s), past the 10 s deadline.
    await run.ledger.publish(run.base, valid_logs(4, size["first"]))
    pulled = time.monotonic()
    await wait_until(lambda: a.received + b.received >= size["first"], timeout=30)
    await asyncio.sleep(max(0.0, pulled + ACK_DEADLINE + 2 - time.monotonic()))
    assert await run.handled() == 0, "flushed before FLUSHINTERVAL"
    # Held > 12 s: without lease extension the emulator would hand them out again now.
    held_past_deadline = await subscription_backlog(run.base)
    assert held_past_deadline == 0, f"{held_past_deadline} messages redelivered while held"
    await run.wait_handled(timeout=30)
    phase1_duplicates = a.duplicates + b.duplicates
    assert phase1_duplicates == 0
    assert a.received + b.received == size["first"]  # nothing was delivered twice

    # Phase 2: steady traffic with forced redeliveries.
    publisher = SteadyPublisher(
        run.base, run.ledger, valid_logs(5, size["messages"], start=size["first"]), size["rate"]
    ).start()
    phase = size["messages"] / size["rate"]
    await asyncio.sleep(phase * 0.2)
    a_held = a.received - a.committed
    a.sigstop()
    run.fault(f"SIGSTOP a holding {a_held} (their leases expire, b gets them)")
    await asyncio.sleep(ACK_DEADLINE + 5)
    a.sigcont()
    run.fault("SIGCONT a (it writes what b already holds or stored)")
    await asyncio.sleep(phase * 0.2)
    b.sigkill()
    assert await b.wait(10) == -9
    run.fault("SIGKILL b")
    b.start()
    await b.wait_started()
    await publisher.wait()
    await run.wait_handled(timeout=120)
    await run.settle_and_stop()
    summary = await run.verify(
        held_past_deadline_redelivered=held_past_deadline,
        phase1_duplicates=phase1_duplicates,
        a_held_when_stopped=a_held,
        received_by={"a": a.received, "b": b.received},
        committed_by={"a": a.committed, "b": b.committed},
    )
    if a_held:  # a and b both wrote those messages: one of the writes was ignored
        assert summary["redeliveries_ignored"] > 0


# --- 5. Poison flood ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
async def test_poison_flood(variant: str, scenario: ScenarioFactory) -> None:
    """10% of the messages are invalid in every way of tests/poison.py's catalogue, some about
    1 MB, plus hypothesis' inventions; `lms mon` never crashes or stalls, every message is
    stored or rejected with its declared reason and its original bytes."""
    size = sizes(
        variant,
        fast={"messages": 5_000, "hypothesis": 150, "big": 5, "batchsize": 500},
        full={"messages": 50_000, "hypothesis": 1_000, "big": 16, "batchsize": 1000},
    )
    run = scenario(
        "5 poison flood",
        variant,
        batchsize=size["batchsize"],
        max_outstanding=2 * size["batchsize"],
        flushinterval=1,
    )
    await run.setup()
    rng = random.Random(5)
    # At least 10% declared invalid, from the catalogue alone (a few of them about 1 MB); on
    # top, hypothesis' inventions (mostly invalid, but nobody declared which), each valid edge
    # case of the catalogue (one of them 1 MB) and ordinary valid logs.
    invented = hypothesis_messages(size["hypothesis"])
    poison = catalogue_messages(rng, size["messages"] // 10 - size["big"], big=size["big"])
    edge = catalogue_messages(rng, len(CATALOGUE), big=1, valid=True)
    ordinary = size["messages"] - len(poison) - len(invented) - len(edge)
    messages: list[Message] = [
        *poison,
        *edge,
        *((body, UNDECLARED) for body in invented),
        *valid_logs(5, ordinary),
    ]
    rng.shuffle(messages)

    mon = run.mon()
    await mon.wait_started()
    for start in range(0, len(messages), 2000):
        await run.ledger.publish(run.base, messages[start : start + 2000])
    # An empty body (with an attribute, or Pub/Sub would refuse it) is poison too.
    await run.ledger.publish(run.base, [(b"", BAD_JSON)], attributes={"kind": "empty"})
    await run.wait_handled(timeout=180)
    assert mon.generation == 1 and mon.alive, mon.tail()
    await run.settle_and_stop()
    reasons = await db_query(
        run.base, "SELECT reason, COUNT(*) FROM rejected_messages GROUP BY reason"
    )
    summary = await run.verify(
        catalogue_kinds=len(CATALOGUE),
        hypothesis_messages=len(invented),
        big_messages=sum(len(body) > 1_000_000 for body, _ in messages),
        rejected_by_reason={reason: int(count) for reason, count in reasons},
    )
    assert summary["db_write_failures"] == 0, "a message broke a database write"
    assert summary["published_invalid"] * 10 >= summary["published"]


# --- 6. Slow database under a big backlog ------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
async def test_slow_database_big_backlog_bounded(
    variant: str, scenario: ScenarioFactory, tcp_proxy: ProxyFactory
) -> None:
    """2 s added to every database round trip under a large backlog: outstanding messages
    never exceed MAX_OUTSTANDING (seen three ways: the monitor's "pulled" lines, the order of
    its log lines, its /metrics gauge) and the resident memory of `lms mon` stays bounded."""
    size = sizes(
        variant,
        fast={"backlog": 10_000, "batchsize": 500, "slow_for": 30},
        full={"backlog": 100_000, "batchsize": 1_000, "slow_for": 150},
    )
    limit = 2 * size["batchsize"]
    rss_limit = 300 << 20
    run = scenario(
        "6 slow DB, big backlog",
        variant,
        batchsize=size["batchsize"],
        max_outstanding=limit,
        flushinterval=1,
    )
    await run.setup()
    for start in range(0, size["backlog"], 20_000):
        count = min(20_000, size["backlog"] - start)
        await run.ledger.publish(run.base, valid_logs(6 + start, count, start=start))
    db = await mysql_proxy(tcp_proxy, run.base)
    port = free_port()
    mon = run.mon(mysql_port=db.port, metrics_port=port)
    sampler = RssSampler(mon).start()
    gauge = MetricsSampler(port, "lms_outstanding_messages").start()
    try:
        await mon.wait_started()
        db.latency = 1.0  # each way: +2 s per round trip
        run.fault("DB latency +2 s per round trip")
        slow_started = time.monotonic()
        await asyncio.sleep(size["slow_for"])
        handled_slow = await run.handled()
        rss_slow = sampler.max
        db.latency = 0.0
        run.fault("DB latency removed")
        await run.wait_handled(timeout=300)
        slow_seconds = time.monotonic() - slow_started
    finally:
        await sampler.stop()
        await gauge.stop()

    # Outstanding as the monitor reports it, and as the log order proves it independently:
    # before each pull line, (messages pulled so far) - (messages in batches committed, and
    # so acked, so far) can only overestimate what is held.
    independent = 0
    pulled = committed = 0
    for event in mon.events():
        if event.get("event") == "pulled":
            pulled += int(event["count"])
            independent = max(independent, pulled - committed)
        elif event.get("event") == "batch committed":
            committed += int(event["size"])
    await run.settle_and_stop()
    await run.verify(
        max_outstanding=limit,
        max_outstanding_seen=mon.max_outstanding_seen,
        max_outstanding_from_log_order=independent,
        max_outstanding_from_metrics=gauge.max,
        metrics_samples=len(gauge.values),
        handled_while_slow=handled_slow,
        slow_seconds=round(slow_seconds, 1),
        rss_max_mb=round(sampler.max / 2**20, 1),
        rss_max_while_slow_mb=round(rss_slow / 2**20, 1),
        rss_samples=len(sampler.samples),
    )
    assert 0 < mon.max_outstanding_seen <= limit
    assert independent <= limit
    assert gauge.values and gauge.max <= limit
    assert handled_slow < size["backlog"] / 2, "the database was not slow enough to matter"
    assert sampler.samples and sampler.max < rss_limit, f"RSS {sampler.max / 2**20:.0f} MB"


# --- 7. SIGTERM under load --------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
async def test_sigterm_under_load(variant: str, scenario: ScenarioFactory) -> None:
    """SIGTERM while busy (a backlog plus a steady stream): exit 0 within FLUSHINTERVAL + 10 s,
    and everything it received is committed and acked: right after exit, the subscription
    holds exactly the messages not stored (nothing leased, nothing to redeliver)."""
    size = sizes(
        variant,
        fast={"backlog": 20_000, "stream": 3_000, "cycles": 2},
        full={"backlog": 60_000, "stream": 15_000, "cycles": 5},
    )
    flushinterval = 5.0
    run = scenario(
        "7 SIGTERM under load",
        variant,
        batchsize=1_000,
        max_outstanding=3_000,
        flushinterval=flushinterval,
    )
    await run.setup()
    await run.ledger.publish(run.base, valid_logs(7, size["backlog"]))
    publisher = SteadyPublisher(
        run.base,
        run.ledger,
        valid_logs(8, size["stream"], start=size["backlog"]),
        rate=size["stream"] / (size["cycles"] * 6),
    ).start()
    rng = random.Random(7)
    exits: list[float] = []
    flushed: list[int] = []  # committed between SIGTERM and exit, per cycle
    for cycle in range(size["cycles"]):
        mon = run.mon(f"mon-{cycle}", batchsize=1_000)
        await mon.wait_started()
        await mon.wait_for("pulled", count=1)
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        signalled = time.monotonic()
        mon.sigterm()
        code = await mon.wait(flushinterval + 30)
        exits.append(round(time.monotonic() - signalled, 2))
        run.fault(f"SIGTERM {cycle}")
        await publisher.pause()
        stored = await run.handled()
        backlog = await subscription_backlog(run.base)
        assert code == 0, mon.tail()
        assert exits[-1] <= flushinterval + 10
        assert mon.received == mon.committed, (mon.received, mon.committed)
        assert not mon.errors(), mon.errors()
        assert backlog == run.ledger.published - stored, (
            f"after exit: {backlog} in the subscription, {run.ledger.published - stored}"
            f" published and not stored"
        )
        events = mon.events()
        signalled_at = next(i for i, e in enumerate(events) if e["event"].startswith("signal"))
        flushed.append(
            sum(e["size"] for e in events[signalled_at:] if e["event"] == "batch committed")
        )
        publisher.resume()
    await publisher.wait()
    final = run.mon("mon-final")
    await final.wait_started()
    await run.wait_handled(timeout=180)
    run.last_fault = 0.0  # nothing was leased to a dead process: no deadline to wait for
    await run.settle_and_stop()
    await run.verify(
        sigterm_exit_seconds_under_load=exits,
        committed_after_sigterm=flushed,
        flushinterval=flushinterval,
    )
    assert any(flushed), "no SIGTERM found messages to flush: not under load"


# --- HTTP ingestion: `lms api` between the clients and Pub/Sub ----------------------------------
#
# A real `lms api` child publishes what clients POST (native logs with ids, the idempotency
# key), a real `lms mon` stores it. The ledger here is the clients': which logs they sent, and
# which were answered 2xx. Every log answered 2xx must be stored (a 2xx promises it), and since
# the clients retry until a 2xx, every log sent; none twice, although retries after a 503 or a
# kill publish some twice (their second writes are the "redeliveries ignored").


async def start_api(
    run: Scenario, name: str = "api", **overrides: Any
) -> tuple[MonitorProcess, str]:
    """An ingest-only `lms api` child of the scenario on a free port; (process, base URL)."""
    port = free_port()
    api = run.mon(name, command="api", api_port=port, api_query=False, **overrides)
    url = f"http://127.0.0.1:{port}"
    await wait_serving(api, url)
    return api, url


async def wait_serving(api: MonitorProcess, url: str, timeout: float = 30) -> None:  # noqa: ASYNC109
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:

        async def serving() -> bool:
            assert api.alive, api.tail()
            with contextlib.suppress(httpx.TransportError):
                return (await http.get("/healthz")).status_code == 200
            return False

        await wait_until(serving, timeout=timeout, interval=0.05, message=f"{api.name} serving")


async def finish_http(run: Scenario, api: MonitorProcess, count: int) -> None:
    """Until `count` logs are stored; then SIGTERM `lms api` first (exit 0: it published
    what it held, such as a publish that the library was still retrying after its request
    got a 503), so that the monitor stores or ignores all of it before it is stopped."""

    async def done() -> bool:
        return await run.handled() >= count

    await wait_until(done, timeout=120, interval=0.5, message=f"{count} logs stored")
    code = await api.stop(timeout=60)
    assert code == 0, api.tail()
    run.last_fault = 0.0  # the monitor was never killed: nothing leased to a dead process
    await run.settle_and_stop()


async def verify_http(
    run: Scenario,
    sent: dict[str, tuple[str, str]],
    acked: set[str],
    stats: SendStats,
    **extra: Any,
) -> dict[str, Any]:
    """The full check of an HTTP scenario, by the clients' ids; records its summary first."""
    rows = await db_query(
        run.base, "SELECT idempotency_key, service_name, severity, payload FROM service_logs"
    )
    rejected = await db_query(run.base, "SELECT COUNT(*) FROM rejected_messages")
    backlog = await subscription_backlog(run.base)
    by_key = Counter(str(key).removeprefix(CLIENT_PREFIX) for key, _svc, _sev, _p in rows)
    by_payload = Counter(payload for _key, _svc, _sev, payload in rows)
    stored_as = {str(key).removeprefix(CLIENT_PREFIX): (svc, str(sev)) for key, svc, sev, _ in rows}
    lost_acked = sorted(key for key in acked if key not in by_key)
    lost = sorted(key for key in sent if key not in by_key)
    unexpected = sorted(key for key in by_key if key not in sent)
    twice = [key for key, n in by_key.items() if n > 1]
    twice += [payload for payload, n in by_payload.items() if n > 1]
    mismatched = [
        (key, stored_as[key], sent[key])
        for key in sent
        if key in stored_as and stored_as[key] != sent[key]
    ]
    consistency = await check_consistency(run.base, Counter(sent.values()))
    batches = run.events("batch committed")
    summary: dict[str, Any] = {
        "scenario": run.name,
        "variant": run.variant,
        **stats.summary(),
        "published": len(sent),
        "accepted": len(acked),
        "stored": len(by_key) - len(unexpected),
        "rejected": int(rejected[0][0]),
        "lost": len(lost),
        "lost_after_2xx": len(lost_acked),
        "duplicated": len(twice) + consistency.overcounted,
        "unexpected": len(unexpected),
        "backlog_after": backlog,
        "redeliveries_ignored": sum(int(b["duplicates"]) for b in batches),
        "processes_started": sum(p.generation for p in run.processes),
        "faults": run.faults,
        "seconds": round(time.monotonic() - run.started, 1),
        "suite_settings": SUITE_OVERRIDES,
        "finished_at": datetime.now().isoformat(timespec="seconds"),
        **run.notes,
        **extra,
    }
    record_summary(run.report, summary)
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    assert not stats.wrong, f"answers neither 2xx nor 429/503 with Retry-After: {stats.wrong[:5]}"
    assert not lost_acked, f"{len(lost_acked)} logs answered 2xx were not stored: {lost_acked[:5]}"
    assert not lost, f"{len(lost)} logs sent were not stored: {lost[:5]}"
    assert not unexpected, unexpected[:5]
    assert not twice, f"stored twice: {twice[:5]}"
    assert not mismatched, mismatched[:5]
    assert consistency.ok, consistency.table()
    assert backlog == 0, f"{backlog} messages left in the subscription"
    return summary


# --- 8. Pub/Sub cut and blackholed under `lms api` ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
async def test_http_ingestion_with_pubsub_cut_and_blackholed(
    variant: str, scenario: ScenarioFactory, tcp_proxy: ProxyFactory
) -> None:
    """Clients POST while the link from `lms api` to Pub/Sub is cut, later blackholed: every
    answer is a 2xx (Pub/Sub confirmed) or a 429/503 with Retry-After, never a 2xx for a log
    that was not published; clients that honour Retry-After end with every log stored once."""
    size = sizes(variant, fast={"outage": 5, "logs": 6_000}, full={"outage": 20, "logs": 20_000})
    outage = size["outage"]
    run = scenario("8 HTTP: Pub/Sub cut + blackhole", variant, batchsize=1000, flushinterval=1)
    await run.setup()
    ps = await pubsub_proxy(tcp_proxy, run.base)
    mon = run.mon()
    await mon.wait_started()
    # INGEST_PUBLISH_TIMEOUT 2 s: requests during the outage are answered 503 within it.
    api, url = await start_api(
        run, pubsub_emulator_host=f"127.0.0.1:{ps.port}", ingest_publish_timeout=2
    )
    clients = RetryingClients(url, keyed_logs("cut", size["logs"]), clients=4, batch=20).start()
    answered: dict[str, Counter[int]] = {}
    for fault in ("cut", "blackhole"):
        await asyncio.sleep(3)
        before = Counter(clients.stats.statuses)
        run.fault(f"Pub/Sub {fault} (lms api's link)")
        if fault == "cut":
            await ps.cut(reset=True)
        else:
            await ps.blackhole()
        await asyncio.sleep(outage)
        await ps.restore()
        run.fault("Pub/Sub restored")
        answered[fault] = clients.stats.statuses - before
        assert answered[fault][503] + answered[fault][429], (
            f"no 503/429 while Pub/Sub was {fault}: {answered[fault]}"
        )
    assert not clients.done, "the clients finished before the faults: send more"
    await clients.wait(timeout=300)
    assert api.alive, api.tail()
    await finish_http(run, api, size["logs"])
    await verify_http(
        run,
        clients.sent,
        clients.acked,
        clients.stats,
        outage_seconds=outage,
        answers_during_cut={str(k): v for k, v in answered["cut"].items()},
        answers_during_blackhole={str(k): v for k, v in answered["blackhole"].items()},
    )


# --- 9. `lms api` SIGKILLed under load --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
async def test_http_ingestion_with_api_sigkilled(variant: str, scenario: ScenarioFactory) -> None:
    """`lms api` is SIGKILLed repeatedly under load and restarted; the clients retry what was
    in flight (it may or may not have been published): every log ever answered 2xx is
    stored, and none twice."""
    size = sizes(variant, fast={"kills": 3, "logs": 6_000}, full={"kills": 8, "logs": 24_000})
    run = scenario("9 HTTP: lms api SIGKILL x N", variant, batchsize=1000, flushinterval=1)
    await run.setup()
    mon = run.mon()
    await mon.wait_started()
    api, url = await start_api(run)
    clients = RetryingClients(url, keyed_logs("kill", size["logs"]), clients=4, batch=20).start()
    rng = random.Random(9)
    acked_at_kill: list[int] = []
    for index in range(size["kills"]):
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        assert not clients.done, "the clients finished before the kills: send more"
        api.sigkill()
        assert await api.wait(10) == -9
        acked_at_kill.append(len(clients.acked))
        run.fault(f"SIGKILL lms api {index + 1}")
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        api.start()
        await wait_serving(api, url)
    await clients.wait(timeout=300)
    await finish_http(run, api, size["logs"])
    summary = await verify_http(
        run,
        clients.sent,
        clients.acked,
        clients.stats,
        kills=size["kills"],
        acked_at_kill=acked_at_kill,
    )
    assert clients.stats.transport_errors, "no request was cut by a kill"
    assert summary["processes_started"] == 1 + 1 + size["kills"]


# --- 10. Bad bodies against a real `lms api` ------------------------------------------------------

HUNDRED_MB = 100 << 20
MB = 1 << 20
JSON = {"Content-Type": "application/json"}


async def zeros(total: int, chunk: int = MB) -> AsyncIterator[bytes]:
    for _ in range(total // chunk):
        yield bytes(chunk)


async def dribble(seconds: float) -> AsyncIterator[bytes]:
    """A slowloris body: one byte a second for `seconds`, then silence."""
    for _ in range(int(seconds)):
        yield b"["
        await asyncio.sleep(1)
    await asyncio.sleep(3600)


SLOWLORIS_TIMEOUT = 8.0
"""INGEST_BODY_TIMEOUT of scenario 10: well within its 20 s of 1 byte/s bodies."""


@pytest.mark.slow
async def test_http_bad_bodies_against_a_real_api(scenario: ScenarioFactory) -> None:
    """The bad-body corpus (tests/bad_bodies.py), three rounds, plus 100 MB bodies (declared
    and chunked) and 1 byte/s slowloris connections, against every ingestion endpoint of a
    real `lms api`, while a good client keeps sending: each bad request gets its 4xx and
    reason, never a 500; the good client is answered 2xx throughout, promptly; the server's
    resident memory does not grow from round to round and stays bounded."""
    slowloris_seconds, rounds = 20, 3
    run = scenario("10 HTTP: bad bodies", "fast", batchsize=500, flushinterval=1)
    await run.setup()
    mon = run.mon()
    await mon.wait_started()
    # A body has INGEST_BODY_TIMEOUT to arrive: the slowloris bodies get their 408 midway.
    api, url = await start_api(run, ingest_body_timeout=SLOWLORIS_TIMEOUT)
    port = int(url.rsplit(":", 1)[1])
    rss = RssSampler(api, interval=0.1).start()
    good = RetryingClients(url, keyed_logs("good", 100_000), clients=1, batch=1, pause=0.1)
    wrong: list[tuple[str, int | None, object]] = []
    chunked_413 = 0
    try:
        good.start()
        await wait_until(lambda: len(good.acked) >= 10, timeout=30, message="good client served")
        await asyncio.sleep(1)
        baseline = rss.max
        slow_started = time.monotonic()
        slowloris = [
            asyncio.create_task(
                raw_post(
                    port,
                    endpoint,
                    {"Content-Type": "application/json"},
                    dribble(slowloris_seconds),
                    1000,
                )
            )
            for endpoint in ENDPOINTS
        ]
        rss_after_round: list[int] = []
        cases = corpus()
        for _round in range(rounds):
            for case in cases:
                answer = await raw_post(
                    port, case.endpoint, case.headers, [case.body], len(case.body)
                )
                if answer.status != case.status or case.reason not in answer.text:
                    wrong.append((case.id, answer.status, answer.body[:200]))
            for endpoint in ENDPOINTS:
                # Declared: refused before a byte of it is sent (curl's Expect: 100-continue).
                answer = await raw_post(
                    port, endpoint, JSON, zeros(HUNDRED_MB), HUNDRED_MB, expect_continue=True
                )
                if answer.status != 413 or "ingest_max_body_bytes" not in answer.text:
                    wrong.append((f"{endpoint} 100 MB declared", answer.status, answer.body[:200]))
                # Chunked: read up to INGEST_MAX_BODY_BYTES, then refused. The server closes
                # with the rest unread, so the client's kernel may drop the 413 for the reset.
                answer = await raw_post(port, endpoint, JSON, zeros(HUNDRED_MB))
                chunked_413 += answer.status == 413
                if answer.status not in (413, None) or answer.sent > 20 * MB:
                    wrong.append((f"{endpoint} 100 MB chunked", answer.status, answer.sent))
            rss_after_round.append(rss.samples[-1][1])
        await asyncio.sleep(max(0.0, slow_started + slowloris_seconds - time.monotonic()))
        served_during_slowloris = len(good.acked)
        for task in slowloris:
            task.cancel()
        slow_answers = [
            result if not isinstance(result, BaseException) else None
            for result in await asyncio.gather(*slowloris, return_exceptions=True)
        ]
        good.stop()
        await good.wait(timeout=60)
    finally:
        await rss.stop()
    assert api.alive, api.tail()
    await finish_http(run, api, len(good.sent))
    mb = 2**20
    bad_requests = rounds * (len(cases) + 2 * len(ENDPOINTS)) + len(slowloris)
    summary = await verify_http(
        run,
        good.sent,
        good.acked,
        good.stats,
        requests=good.stats.requests + bad_requests,
        good_requests=good.stats.requests,
        bad_requests=bad_requests,
        bad_cases=len(cases),
        wrong_bad_answers=len(wrong),
        slowloris_connections=len(slowloris),
        slowloris_answers=[a.status if a else None for a in slow_answers],
        chunked_100mb_answered_413=chunked_413,
        served_during_slowloris=served_during_slowloris,
        rss_baseline_mb=round(baseline / mb, 1),
        rss_peak_mb=round(rss.max / mb, 1),
        rss_after_round_mb=[round(r / mb, 1) for r in rss_after_round],
        rss_samples=len(rss.samples),
    )
    assert not wrong, wrong[:10]
    assert [a.status if a else None for a in slow_answers] == [408] * len(ENDPOINTS)
    assert all("ingest_body_timeout" in a.text for a in slow_answers if a), slow_answers
    assert set(good.stats.statuses) == {202}, good.stats.statuses
    assert summary["slowest_answer_s"] < 5, "the good client waited behind the bad ones"
    assert rss_after_round[-1] - rss_after_round[0] < 32 * mb, "memory grows round after round"
    assert rss.max - baseline < 300 * mb, (
        f"RSS peaked {(rss.max - baseline) / mb:.0f} MB above baseline"
    )
