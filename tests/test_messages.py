"""The simulated traffic of `lms sim`/`lms pub` (lms.devtools.messages, LogFactory): realistic
templates with variable parts, the request convention, seeded determinism, drift and
incidents, all with an injected clock."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from lms.devtools.messages import DRIFT_PERIOD, INCIDENT_ERRORS, INCIDENT_WINDOW, Traffic
from lms.devtools.traffic import LogFactory
from lms.domain.record import LogRecord, parse_message

T0 = 1_717_200_000.0  # 2024-06-01T00:00:00Z
SERVICES = [f"service-{i:02d}" for i in range(1, 6)]
TEMPLATES = {
    "access": re.compile(r'^"(GET|POST|PUT|DELETE) /\S* HTTP/1\.1" \d{3} \d+ \d+\.\dms$'),
    "cache": re.compile(r"^cache miss for key \w+:\d+ on [\w-]+:\d+ \(ttl \d+s\)$"),
    "rows": re.compile(r"^loaded \d+ rows from \w+ in \d+ ms$"),
    "job": re.compile(r"^job [\w-]+ [0-9a-f]{12} completed in \d+ ms$"),
    "slow": re.compile(r"^slow query on \w+ at [\w-]+:\d+ took \d+ ms$"),
    "retry": re.compile(r"^retrying [\w-]+ job [0-9a-f]{12} \(attempt \d/5\) in \d+ ms: [\w-]+"),
    "database": re.compile(r"^Failed to connect to [\w-]+:\d+ after \d attempts: [\w ]+$"),
    "upstream": re.compile(r"^upstream [\w-]+ \(10\.\d+\.\d+\.\d+:8080\) answered 5\d\d after"),
    "fatal": re.compile(r"^(out of memory in worker|giving up on [\w-]+:\d+)"),
}


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _bodies(
    count: int, seed: int = 1, clock: Callable[[], float] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    factory = LogFactory(random.Random(seed), clock=clock or Clock(), **kwargs)
    out = []
    for i in range(count):
        data, key = factory.make(SERVICES[i % len(SERVICES)])
        body = json.loads(data)
        assert key == (body["service_name"], body["severity"])
        out.append(body)
    return out


def _template(payload: str) -> str:
    for name, pattern in TEMPLATES.items():
        if pattern.search(payload):
            return name
    raise AssertionError(f"no template matches {payload!r}")


def test_every_template_is_used_and_nothing_else() -> None:
    kinds = Counter(_template(body["payload"]) for body in _bodies(20_000))
    assert set(kinds) == set(TEMPLATES)
    assert kinds["access"] > 0.4 * 20_000


def test_variable_parts_vary_within_a_template() -> None:
    bodies = _bodies(5000)
    payloads = [body["payload"] for body in bodies]
    assert len(set(payloads)) > 0.9 * len(payloads)
    masked = {re.sub(r"[0-9a-f]{12,}|\d+(\.\d+)?", "<*>", p) for p in payloads}
    assert len(masked) < 400, "templates, not word salad"
    hosts = {m.group(0) for p in payloads for m in [re.search(r"[\w-]+:\d{4,5}\b", p)] if m}
    assert len(hosts) >= 3


def test_every_log_is_valid_and_severities_are_mixed() -> None:
    bodies = _bodies(10_000)
    for body in bodies:
        assert isinstance(parse_message(json.dumps(body).encode()), LogRecord), body
    severities = Counter(body["severity"] for body in bodies)
    assert set(severities) == {"debug", "info", "warn", "error", "fatal"}


def test_request_logs_follow_the_request_convention() -> None:
    requests = [b for b in _bodies(5000) if "metadata" in b]
    assert len(requests) > 2000
    seqs: dict[str, list[int]] = {}
    for body in requests:
        record = parse_message(json.dumps(body).encode())
        assert isinstance(record, LogRecord)
        metadata = body["metadata"]
        http = metadata["http"]
        assert set(http) == {
            "method", "route", "path", "status_code", "duration_ms", "request_size",
            "response_size",
        }  # fmt: skip
        pattern = re.escape(http["route"]).replace(r"\{id\}", r"\d+").replace(r"\{item\}", r"\d+")
        assert re.fullmatch(pattern, http["path"]), http
        assert isinstance(http["status_code"], int) and 200 <= http["status_code"] < 600
        assert http["duration_ms"] > 0
        expected = "error" if http["status_code"] >= 500 else "warn"
        if http["status_code"] < 400:
            expected = "info"
        assert body["severity"] == expected
        assert f" {http['path']} " in body["payload"]
        assert f" {http['status_code']} " in body["payload"]
        assert re.fullmatch(r"[0-9a-f]{32}", metadata["request_id"])
        assert re.fullmatch(r"service-\d\d-[0-9a-f]{6}:\d+", metadata["instance"])
        assert "user_id" not in metadata or isinstance(metadata["user_id"], int)
        seqs.setdefault(metadata["instance"], []).append(metadata["seq"])
    for numbers in seqs.values():
        assert numbers == list(range(1, len(numbers) + 1)), "seq counts each instance's requests"
    assert sum("user_id" in b["metadata"] for b in requests) > 0.5 * len(requests)
    statuses = Counter(b["metadata"]["http"]["status_code"] // 100 for b in requests)
    assert {2, 4, 5} <= set(statuses)


def test_a_request_log_is_stamped_with_its_start() -> None:
    for body in _bodies(500):
        record = parse_message(json.dumps(body).encode())
        assert isinstance(record, LogRecord)
        if "metadata" in body:
            took = body["metadata"]["http"]["duration_ms"] / 1000
            assert record.timestamp.timestamp() == pytest.approx(T0 - took, abs=1e-5)
        else:
            assert record.timestamp.timestamp() == pytest.approx(T0, abs=1e-5)


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    assert _bodies(2000, seed=7) == _bodies(2000, seed=7)
    assert _bodies(2000, seed=7) != _bodies(2000, seed=8)


def test_payload_chars_bounds_every_payload() -> None:
    for low, high in [(50, 2000), (20, 30), (300, 300)]:
        lengths = [len(b["payload"]) for b in _bodies(2000, payload_chars=(low, high))]
        assert low <= min(lengths) and max(lengths) <= high
    assert max(len(b["payload"]) for b in _bodies(2000, payload_chars=(50, 2000))) > 1000


def _error_share(traffic: Traffic, service: str, now: float, count: int = 3000) -> float:
    logs = [traffic.make(service, now) for _ in range(count)]
    return sum(log.severity in ("error", "fatal") for log in logs) / count


def _calm(traffic: Traffic, service: str, start: float) -> float:
    """A moment of no incident near `start`."""
    moment = start
    while traffic.in_incident(service, moment):
        moment += 1
    return moment


def test_error_share_drifts_over_time() -> None:
    traffic = Traffic(random.Random(3), Clock())
    service = SERVICES[0]
    moments = [_calm(traffic, service, T0 + DRIFT_PERIOD * k / 8) for k in range(8)]
    factors = [traffic.error_factor(service, m) for m in moments]
    high, low = moments[factors.index(max(factors))], moments[factors.index(min(factors))]
    assert max(factors) > 2 * min(factors)
    assert _error_share(traffic, service, high) > 1.5 * _error_share(traffic, service, low)
    rates = [traffic.rate_factor(service, m) for m in moments]
    assert max(rates) > 1.5 * min(rates)


def test_incidents_burst_errors_and_rate() -> None:
    traffic = Traffic(random.Random(4), Clock())
    service = SERVICES[1]
    spans = [traffic.incident(service, T0 + w * INCIDENT_WINDOW) for w in range(40)]
    found = [span for span in spans if span is not None]
    assert 0 < len(found) < 40, "incidents are occasional"
    start, end = found[0]
    inside = (start + end) / 2
    before = start - 1
    assert not traffic.in_incident(service, before)
    assert traffic.in_incident(service, inside) and not traffic.in_incident(service, end)
    assert traffic.error_factor(service, inside) > 3 * traffic.error_factor(service, before)
    share = _error_share(traffic, service, inside)
    assert share > 4 * _error_share(traffic, service, before)
    assert traffic.rate_factor(service, inside) > 1.5 * traffic.rate_factor(service, before)
    assert INCIDENT_ERRORS > 1
    refused = [log.payload for log in (traffic.make(service, inside) for _ in range(2000))]
    database = [p for p in refused if p.startswith("Failed to connect")]
    assert database and all(p.endswith("connection refused") for p in database)


def test_the_incident_schedule_is_the_seeds() -> None:
    def schedule(seed: int) -> list[object]:
        traffic = Traffic(random.Random(seed), Clock())
        return [traffic.incident(SERVICES[0], T0 + w * INCIDENT_WINDOW) for w in range(30)]

    assert schedule(5) == schedule(5)
    assert schedule(5) != schedule(6)
