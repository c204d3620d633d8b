"""Observability of `lms mon`: /metrics, /healthz, /readyz, structured logs and deploy/ files.

The integration tests run `lms mon` as a subprocess (its own, fresh metrics registry) against
the real emulator and MariaDB, scrape it over HTTP, and compare the counters with what
happened. The readiness test puts a TCP proxy between `lms mon` and MariaDB and cuts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import yaml
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.parser import text_string_to_metric_families

from lms.devtools.monitor_process import MonitorProcess
from lms.devtools.ports import free_port
from lms.ops import metrics  # registers LMS's metrics in the default registry
from lms.ops.health import HealthServer, ReadinessCheck
from lms.ops.log_setup import configure_logging
from lms.settings import Settings
from tests.helpers import SettingsFactory, db_query, ensure_resources, make_log, publish, wait_until
from tests.proxy import ProxyFactory

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# Issue 3: name -> (type, label names). Counters are named without `_total` here, as
# prometheus-client's families are; their samples carry `_total`.
LMS_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lms_messages_received": ("counter", ()),
    "lms_messages_acked": ("counter", ()),
    "lms_messages_nacked": ("counter", ()),
    "lms_logs_stored": ("counter", ("severity",)),
    "lms_messages_duplicate": ("counter", ()),
    "lms_messages_rejected": ("counter", ("reason",)),
    "lms_batches_flushed": ("counter", ("trigger",)),
    "lms_batch_size_messages": ("histogram", ()),
    "lms_flush_duration_seconds": ("histogram", ()),
    "lms_db_errors": ("counter", ()),
    "lms_buffered_messages": ("gauge", ()),
    "lms_outstanding_messages": ("gauge", ()),
    "lms_last_commit_timestamp_seconds": ("gauge", ()),
    "lms_commit_lag_seconds": ("gauge", ()),
    "lms_publish_to_commit_seconds": ("histogram", ()),
    "lms_flush_interval_seconds": ("gauge", ()),
    "lms_max_outstanding_messages": ("gauge", ()),
}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def sample_names() -> set[str]:
    """Every sample name LMS exposes, e.g. lms_messages_received_total, ..._bucket."""
    return {
        name + suffix
        for name, (kind, _labels) in LMS_METRICS.items()
        for suffix in SUFFIXES[kind] + (("_created",) if kind != "gauge" else ())
    }


# --- scraping ------------------------------------------------------------------------------


class Scrape:
    """One parsed /metrics page: `value(name, **labels)` and `total(name)` over label sets."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, s.labels, s.value) for f in self.families.values() for s in f.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        found = [v for n, lab, v in self.samples if n == name and lab == labels]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
        return found[0]

    def total(self, name: str) -> float:
        return sum(v for n, _lab, v in self.samples if n == name)

    def by(self, name: str, label: str) -> dict[str, float]:
        return {lab[label]: v for n, lab, v in self.samples if n == name and v}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # An async client: the test's event loop (and the proxy in it) keeps running meanwhile.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with http.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


# --- unit: the health server ---------------------------------------------------------------


class FakeDatabase:
    def __init__(self) -> None:
        self.pings = 0
        self.error: Exception | None = None
        self.hang = False

    async def ping(self) -> None:
        self.pings += 1
        if self.hang:
            await asyncio.sleep(60)
        if self.error is not None:
            raise self.error


def test_observe_many_is_observe_per_value() -> None:
    """The flusher's batched observation exposes what one observe() per value would: values
    on a bound, between bounds, below the first, above the last, negative, repeated."""
    values = [0.05, 0.0500001, 0.1, 3.0, 3.0, -1.0, 0.0, 1e9, 599.9, 600.0, 0.2] * 3
    exposed = []
    for batched in (False, True):
        registry = CollectorRegistry()
        histogram = Histogram("lag_seconds", "lag", buckets=(0.05, 0.1, 1, 600), registry=registry)
        if batched:
            metrics.observe_many(histogram, values[:7])
            metrics.observe_many(histogram, values[7:])
            metrics.observe_many(histogram, [])
        else:
            for value in values:
                histogram.observe(value)
        exposed.append(
            {
                (sample.name, sample.labels.get("le")): sample.value
                for family in text_string_to_metric_families(generate_latest(registry).decode())
                for sample in family.samples
                if not sample.name.endswith("_created")
            }
        )
    unbatched, batched = exposed
    assert batched.pop(("lag_seconds_sum", None)) == pytest.approx(
        unbatched.pop(("lag_seconds_sum", None))
    )
    assert batched == unbatched
    assert batched[("lag_seconds_bucket", "0.05")] == 9
    assert batched[("lag_seconds_bucket", "+Inf")] == len(values)


async def test_readiness_needs_database_and_subscriber() -> None:
    db = FakeDatabase()
    running = False
    now = 0.0
    check = ReadinessCheck(lambda: running, db.ping, timeout=0.2, cache_for=1.0, clock=lambda: now)

    reason, checks = await check.check()
    assert reason == "subscriber not running"
    assert checks == {"database": "ok", "subscriber": "not running"}

    running = True
    assert (await check.check())[0] is None
    assert db.pings == 1  # cached within cache_for

    db.error = ConnectionRefusedError(111, "Connection refused")
    assert (await check.check())[0] is None  # still the cached answer
    now = 1.0
    reason, checks = await check.check()
    # The failure's kind, not what the server said (it may name users and hosts).
    assert reason == "database unreachable: ConnectionRefusedError"
    assert checks["database"] == "ConnectionRefusedError"
    assert db.pings == 2

    db.error, db.hang = None, True
    now = 2.0
    reason, _ = await check.check()
    assert reason == "database unreachable: no answer within 0.2s"


async def test_readiness_probes_share_one_ping() -> None:
    db = FakeDatabase()
    check = ReadinessCheck(lambda: True, db.ping, cache_for=1.0)
    results = await asyncio.gather(*(check.check() for _ in range(10)))
    assert all(reason is None for reason, _ in results)
    assert db.pings == 1


async def test_health_server_endpoints(http: aiohttp.ClientSession) -> None:
    db = FakeDatabase()
    running = True
    registry = CollectorRegistry()
    PromCounter("lms_example", "an example", registry=registry).inc(3)
    port = free_port()
    server = HealthServer(
        "127.0.0.1", port, ReadinessCheck(lambda: running, db.ping, cache_for=0), registry
    )
    await server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        status, ctype, body = await _get(http, f"{base}/healthz")
        assert (status, json.loads(body)) == (200, {"alive": True})
        assert ctype.startswith("application/json")

        status, _, body = await _get(http, f"{base}/readyz")
        assert status == 200 and json.loads(body)["ready"] is True

        running = False
        status, ctype, body = await _get(http, f"{base}/readyz")
        assert status == 503 and ctype.startswith("application/json")
        assert json.loads(body) == {
            "ready": False,
            "reason": "subscriber not running",
            "checks": {"database": "ok", "subscriber": "not running"},
        }

        running, db.error = True, OSError("boom")
        status, _, body = await _get(http, f"{base}/readyz")
        assert status == 503 and json.loads(body)["reason"] == "database unreachable: OSError"

        status, ctype, body = await _get(http, f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert Scrape(body).value("lms_example_total") == 3

        async with http.get(
            f"{base}/metrics", headers={"Accept": "application/openmetrics-text"}
        ) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await response.text()).rstrip().endswith("# EOF")

        assert (await _get(http, f"{base}/nope"))[0] == 404
    finally:
        await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(http, f"{base}/healthz")


async def test_default_registry_has_lms_and_process_metrics(http: aiohttp.ClientSession) -> None:
    port = free_port()
    server = HealthServer("127.0.0.1", port, ReadinessCheck(lambda: True, FakeDatabase().ping))
    await server.start()
    try:
        _, _, body = await _get(http, f"http://127.0.0.1:{port}/metrics")
    finally:
        await server.stop()
    scrape = Scrape(body)
    for name, (kind, labels) in LMS_METRICS.items():
        family = scrape.families.get(name)
        assert family is not None, f"{name} is not exposed"
        assert family.type == kind, name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= set(labels), (name, sample.labels)
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"):
        assert name in scrape.families, f"process metric {name} missing"


async def test_port_zero_disables_and_busy_port_fails_clearly() -> None:
    check = ReadinessCheck(lambda: True, FakeDatabase().ping)
    disabled = HealthServer("127.0.0.1", 0, check)
    await disabled.start()
    assert not disabled.enabled
    await disabled.stop()

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = HealthServer("127.0.0.1", port, check)
        with pytest.raises(RuntimeError, match=f"METRICS_PORT={port}"):
            await server.start()


def test_metrics_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METRICS_HOST", raising=False)
    monkeypatch.delenv("METRICS_PORT", raising=False)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.metrics_host, defaults.metrics_port) == ("127.0.0.1", 9464)
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("METRICS_PORT", "0")
    configured = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (configured.metrics_host, configured.metrics_port) == ("0.0.0.0", 0)


# --- unit: logs ----------------------------------------------------------------------------


class _Stdout(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.parametrize(
    ("fmt", "tty", "json_lines"),
    [("auto", False, True), ("auto", True, False), ("json", True, True), ("console", False, False)],
)
def test_log_format(
    monkeypatch: pytest.MonkeyPatch, restore_structlog: None, fmt: str, tty: bool, json_lines: bool
) -> None:
    out = _Stdout(tty)
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging("info", fmt)
    log = structlog.get_logger("lms.test")
    log.info("batch committed", size=3, trigger="size")
    log.debug("hidden at info")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    if json_lines:
        event = json.loads(lines[0])
        assert event["event"] == "batch committed" and event["level"] == "info"
        assert event["size"] == 3 and event["trigger"] == "size" and "timestamp" in event
    else:
        assert "batch committed" in lines[0] and "size" in lines[0]
        with pytest.raises(json.JSONDecodeError):
            json.loads(lines[0])


def test_log_level_debug(monkeypatch: pytest.MonkeyPatch, restore_structlog: None) -> None:
    out = _Stdout(False)
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging("debug", "json")
    structlog.get_logger("lms.test").debug("shown at debug")
    assert json.loads(out.getvalue())["event"] == "shown at debug"


# --- deploy/ files -------------------------------------------------------------------------

METRIC_TOKEN = re.compile(r"\b(lms_[a-z_]+)\b")


def _alert_rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "alerts.yml").read_text(encoding="utf-8"))
    return {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"]}


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs
    return exprs


def test_alert_rules_cover_the_issue() -> None:
    rules = _alert_rules()
    stalled = rules["LmsNoCommit"]["expr"]
    for name in (
        "lms_last_commit_timestamp_seconds",
        "lms_outstanding_messages",
        "lms_flush_interval_seconds",
    ):
        assert name in stalled
    assert "5 *" in stalled
    assert "lms_db_errors_total" in rules["LmsDatabaseErrors"]["expr"]
    assert "lms_messages_rejected_total" in rules["LmsRejectedRateHigh"]["expr"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_deploy_files_reference_only_real_metrics() -> None:
    known = sample_names()
    texts = {
        "alerts.yml": (DEPLOY / "alerts.yml").read_text(encoding="utf-8"),
        "alerts.test.yml": (DEPLOY / "alerts.test.yml").read_text(encoding="utf-8"),
        "grafana-dashboard.json": "\n".join(_dashboard_exprs()),
    }
    for name, text in texts.items():
        used = set(METRIC_TOKEN.findall(text))
        assert used, name
        assert used <= known, f"{name} uses unknown metrics: {sorted(used - known)}"


def test_prometheus_config_scrapes_lms() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    assert "alerts.yml" in config["rule_files"]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "lms"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets and all(t.endswith(":9464") for t in targets)


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


def _run(*args: str) -> None:
    result = subprocess.run(args, cwd=DEPLOY, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_config_and_rules() -> None:
    promtool = _promtool()
    _run(promtool, "check", "config", "prometheus.yml")
    _run(promtool, "check", "rules", "alerts.yml")
    _run(promtool, "test", "rules", "alerts.test.yml")


def test_promtool_parses_dashboard_queries(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = [
        {
            "record": f"dashboard:query{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$instance", ".*"),
        }
        for i, expr in enumerate(_dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run(promtool, "check", "rules", str(path))


def test_docker_compose_runs_prometheus() -> None:
    path = ROOT / "docker-compose.yml"
    if not path.exists():
        pytest.skip("no docker-compose.yml")
    services = yaml.safe_load(path.read_text(encoding="utf-8"))["services"]
    prometheus = services["prometheus"]
    mounts = " ".join(str(v) for v in prometheus.get("volumes", []))
    for name in ("prometheus.yml", "alerts.yml"):
        assert f"./deploy/{name}" in mounts
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    hosts = {
        t.rsplit(":", 1)[0]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for t in group["targets"]
    }
    assert hosts <= set(services), f"scrape targets {hosts} are not compose services"
    for host in hosts:
        env = services[host].get("environment", {})
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        assert env.get("METRICS_HOST") == "0.0.0.0", f"{host} must listen on all interfaces"


def test_readme_documents_every_metric() -> None:
    path = ROOT / "README.md"
    if not path.exists():
        pytest.skip("no README.md")
    text = path.read_text(encoding="utf-8")
    assert "## Metrics and health" in text
    for name, (kind, _labels) in LMS_METRICS.items():
        exposed = name + ("_total" if kind == "counter" else "")
        assert exposed in text, f"README does not document {exposed}"
    for word in ("/metrics", "/healthz", "/readyz", "METRICS_HOST", "METRICS_PORT"):
        assert word in text
    for alert in _alert_rules():
        assert alert in text, f"README does not mention alert {alert}"


# --- integration: a real `lms mon` ---------------------------------------------------------


class MonProcess(MonitorProcess):
    """`lms mon` (the shared harness) with its metrics and health server on a free port."""

    def __init__(self, settings: Settings, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            settings,
            workdir,
            env={
                "METRICS_HOST": "127.0.0.1",
                "METRICS_PORT": str(self.port),
                "LOG_FORMAT": "auto",  # stdout is a file: JSON lines
                "LOG_LEVEL": "info",
                **env,
            },
        )
        self.start()

    def output(self) -> str:
        return f"exit code {self.returncode}\n{self.tail()}"

    def json_events(self) -> list[dict[str, Any]]:
        """Every stdout line, each of which must be a JSON object."""
        events = self.events()
        assert not [e for e in events if e["event"] == "<unparsed>"], self.output()
        return events

    async def get(self, http: aiohttp.ClientSession, path: str) -> tuple[int, str]:
        assert self.alive, self.output()
        status, _ctype, body = await _get(http, self.url + path)
        return status, body

    async def scrape(self, http: aiohttp.ClientSession) -> Scrape:
        status, body = await self.get(http, "/metrics")
        assert status == 200
        return Scrape(body)

    async def wait_serving(self, http: aiohttp.ClientSession) -> None:
        async def serving() -> bool:
            assert self.alive, self.output()
            with contextlib.suppress(aiohttp.ClientConnectionError):
                return (await self.get(http, "/healthz"))[0] == 200
            return False

        await wait_until(serving, timeout=60, message="lms mon serving /healthz")

    async def wait_ready(self, http: aiohttp.ClientSession, ready: bool = True) -> dict[str, Any]:
        async def state() -> dict[str, Any] | None:
            status, body = await self.get(http, "/readyz")
            assert status in (200, 503), (status, body)
            doc = json.loads(body)
            assert doc["ready"] is (status == 200)
            return doc if doc["ready"] is ready else None

        return await wait_until(  # type: ignore[return-value]
            state, timeout=60, interval=0.2, message=f"/readyz ready={ready}"
        )


@pytest.fixture
def mon_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[MonProcess] = []

    def start(settings: Settings, **env: str) -> MonProcess:
        mon = MonProcess(settings, tmp_path, **env)
        started.append(mon)
        return mon

    yield start
    for mon in started:
        if mon.alive:
            mon.kill_blocking()


INVALID = [
    (b"{not json", "invalid_json"),
    (b'{"service_name": "svc", "payload": "x"', "invalid_json"),
    (b"\xff\xfe not utf-8", "invalid_utf8"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"service_name": "svc", "payload": "no severity"}', "missing_field"),
    (
        json.dumps(
            {
                "service_name": "svc",
                "payload": "x",
                "severity": "loud",
                "timestamp": "2024-05-01T12:00:00Z",
            }
        ).encode(),
        "invalid_field",
    ),
    (
        b'{"service_name": "svc", "payload": "x", "severity": "info", "timestamp": "May 1st"}',
        "invalid_field",
    ),
]
SEVERITIES = ["debug", "info", "warn", "error", "fatal"]


@pytest.mark.integration
async def test_metrics_count_what_happened(
    settings: SettingsFactory, mon_factory: Any, http: aiohttp.ClientSession
) -> None:
    s = settings(batchsize=25, flushinterval=0.5)
    await ensure_resources(s)
    started_at = time.time()
    mon = mon_factory(s)
    await mon.wait_serving(http)
    await mon.wait_ready(http)

    valid = [
        make_log(f"svc-{i % 3}", SEVERITIES[i % len(SEVERITIES)], f"obs-payload-{i}")
        for i in range(103)
    ]
    messages = valid[:60] + [data for data, _ in INVALID] + valid[60:]
    ids = await publish(s, messages)
    n, k = len(valid), len(INVALID)

    async def everything_acked() -> Scrape | None:
        scrape = await mon.scrape(http)
        return scrape if scrape.value("lms_messages_acked_total") >= n + k else None

    await wait_until(everything_acked, timeout=60, message="all messages acked")
    # Gauges are updated when the acks complete; poll until the monitor is idle.

    async def idle() -> Scrape | None:
        scrape = await mon.scrape(http)
        gauges = (scrape.value("lms_outstanding_messages"), scrape.value("lms_buffered_messages"))
        return scrape if gauges == (0, 0) else None

    scrape: Scrape = await wait_until(idle, timeout=30, message="outstanding and buffered 0")  # type: ignore[assignment]

    assert (await db_query(s, "SELECT COUNT(*) FROM service_logs"))[0][0] == n
    assert (await db_query(s, "SELECT COUNT(*) FROM rejected_messages"))[0][0] == k

    assert scrape.value("lms_messages_received_total") == n + k
    assert scrape.value("lms_messages_acked_total") == n + k
    assert scrape.value("lms_messages_nacked_total") == 0
    assert scrape.value("lms_messages_duplicate_total") == 0
    assert scrape.value("lms_db_errors_total") == 0
    assert scrape.total("lms_logs_stored_total") == n
    assert scrape.by("lms_logs_stored_total", "severity") == dict(
        Counter(SEVERITIES[i % len(SEVERITIES)] for i in range(n))
    )
    assert scrape.by("lms_messages_rejected_total", "reason") == dict(
        Counter(reason for _, reason in INVALID)
    )

    batches = scrape.total("lms_batches_flushed_total")
    assert batches >= (n + k) / 25
    assert set(scrape.by("lms_batches_flushed_total", "trigger")) <= {"size", "interval"}
    assert scrape.value("lms_batch_size_messages_count") == batches
    assert scrape.value("lms_batch_size_messages_sum") == n + k
    assert scrape.value("lms_flush_duration_seconds_count") == batches
    assert scrape.value("lms_publish_to_commit_seconds_count") == n + k
    assert 0 < scrape.value("lms_publish_to_commit_seconds_sum") < 60 * (n + k)
    assert started_at <= scrape.value("lms_last_commit_timestamp_seconds") <= time.time()
    assert scrape.value("lms_flush_interval_seconds") == 0.5
    assert scrape.value("lms_max_outstanding_messages") == 50
    assert scrape.value("process_resident_memory_bytes") > 0

    assert await mon.stop() == 0, mon.output()
    events = mon.json_events()  # every stdout line is a JSON object (stdout is not a terminal)
    committed = [e for e in events if e["event"] == "batch committed"]
    assert len(committed) == batches
    assert sum(e["size"] for e in committed) == n + k
    assert sum(e["new"] for e in committed) == n
    assert sum(e["rejected"] for e in committed) == k
    assert sum(e["duplicates"] for e in committed) == 0
    for event in committed:
        assert {"size", "trigger", "new", "duplicates", "rejected", "commit_seconds"} <= set(event)
        assert event["level"] == "info" and "timestamp" in event
    # One line per batch, never one per message.
    assert "obs-payload-" not in mon.log_path.read_text(encoding="utf-8")
    assert not any(e.get("message_id") in set(ids) for e in events)
    assert len(events) < n + k


@pytest.mark.integration
async def test_readyz_follows_the_database(
    settings: SettingsFactory,
    mon_factory: Any,
    http: aiohttp.ClientSession,
    tcp_proxy: ProxyFactory,
) -> None:
    direct = settings(batchsize=50, flushinterval=0.3)
    proxy = await tcp_proxy(direct.mysql_host, direct.mysql_port)
    await ensure_resources(direct)
    mon = mon_factory(settings(batchsize=50, flushinterval=0.3, mysql_port=proxy.port))
    await mon.wait_serving(http)
    doc = await mon.wait_ready(http)
    assert doc["checks"] == {"database": "ok", "subscriber": "running"}
    assert "reason" not in doc

    async def stored(count: int) -> bool:
        return (await db_query(direct, "SELECT COUNT(*) FROM service_logs"))[0][0] == count

    await publish(direct, [make_log("svc", "info", f"before {i}") for i in range(10)])
    await wait_until(lambda: stored(10), message="10 logs stored through the proxy")

    # The database goes away: not ready (but alive), and writes fail and are retried.
    await proxy.cut()
    doc = await mon.wait_ready(http, ready=False)
    assert doc["reason"].startswith("database unreachable: "), doc
    assert doc["checks"]["subscriber"] == "running"
    assert (await mon.get(http, "/healthz"))[0] == 200

    await publish(direct, [make_log("svc", "error", f"during {i}") for i in range(5)])

    async def db_errors() -> float:
        return (await mon.scrape(http)).value("lms_db_errors_total")

    await wait_until(db_errors, timeout=30, message="lms_db_errors_total > 0")

    # It comes back: ready again, and the held messages are committed.
    await proxy.restore()
    assert (await mon.wait_ready(http))["checks"]["database"] == "ok"
    await wait_until(lambda: stored(15), timeout=60, message="15 logs stored after restore")

    async def acked(count: int) -> bool:
        return (await mon.scrape(http)).value("lms_messages_acked_total") == count

    # The rows are visible before lms mon has its commit's answer: cut now, and it would
    # retry a committed batch (stored once, but not counted as its own).
    await wait_until(lambda: acked(15), timeout=30, message="lms mon acked all 15")

    # A database that accepts connections but never answers: not ready either.
    await proxy.blackhole()
    doc = await mon.wait_ready(http, ready=False)
    assert doc["reason"].startswith("database unreachable: no answer within"), doc
    await proxy.restore()
    await mon.wait_ready(http)

    scrape = await mon.scrape(http)
    assert scrape.total("lms_logs_stored_total") == 15
    assert scrape.value("lms_messages_acked_total") == 15

    assert await mon.stop() == 0, mon.output()
    events = mon.json_events()
    failures = [e for e in events if e["level"] == "error" and "database" in e["event"]]
    assert failures, "no error line for the failed database writes"
    assert all(e.get("error") for e in failures), failures  # each names its cause
    assert any(e["event"] == "not ready" and "database" in e["reason"] for e in events)
