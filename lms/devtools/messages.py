"""Realistic simulated logs: what `lms sim` and `lms pub` services say, and how often.

Each service has its own routes, database, cache and upstream (drawn from its name, so
`service-03` is the same service in every run). A message is one of a few templates with
variable parts, the lines a person recognises from real services:

- HTTP access lines that follow the request convention of the client library
  (`metadata.http.method/route/path/status_code/duration_ms/request_size/response_size`,
  `metadata.user_id`, `metadata.request_id`, `metadata.instance` and `metadata.seq`, the
  request's start as its timestamp): `info`, `warn` for 4xx, `error` for 5xx;
- cache misses with keys, slow queries, retries with job ids, database and upstream errors
  with hosts and ports, and a rare fatal crash.

Severities and rates drift: each service's error share and request rate follow slow waves
(DRIFT_PERIOD) with its own phase, and now and then an incident (INCIDENT_WINDOW,
INCIDENT_ODDS) multiplies its errors for INCIDENT_SECONDS, with one failure dominating (its
database refusing connections, its upstream timing out). Everything is a function of the
seed, the service and the injected clock, so a unit test can place itself in an incident.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DRIFT_PERIOD = 600.0
"""Seconds of one wave of a service's error share and rate."""
INCIDENT_WINDOW = 300.0
"""Seconds of the windows each of which may hold one incident per service."""
INCIDENT_ODDS = 0.3
"""Chance that a window holds an incident."""
INCIDENT_SECONDS = 30.0
INCIDENT_ERRORS = 12.0
"""How many times more errors a service logs during an incident."""

_ROUTES = [
    ("GET", "/api/v1/orders/{id}", 40),
    ("GET", "/api/v1/users/{id}", 25),
    ("GET", "/api/v1/products", 60),
    ("GET", "/api/v1/search", 120),
    ("POST", "/api/v1/orders", 90),
    ("PUT", "/api/v1/users/{id}/profile", 50),
    ("DELETE", "/api/v1/cart/{id}/items/{item}", 30),
    ("POST", "/api/v1/payments", 180),
    ("GET", "/api/v1/invoices/{id}/pdf", 250),
    ("POST", "/auth/login", 70),
    ("GET", "/healthz", 2),
]
"""(method, route template, median duration in ms)."""
_TABLES = ["orders", "users", "payments", "sessions", "inventory", "ledger", "carts", "events"]
_DATABASES = [("db-primary", 5432), ("mysql-main", 3306), ("orders-db", 5432), ("ledger", 3306)]
_CACHES = [("redis-cache", 6379), ("memcached", 11211)]
_UPSTREAMS = ["payments-gateway", "inventory-svc", "auth-svc", "search-svc", "shipping-api"]
_DB_REASONS = ["connection refused", "timeout", "too many connections", "connection reset by peer"]
_ENTITIES = ["user", "order", "product", "session", "cart", "price"]
_JOBS = ["send-email", "sync-inventory", "charge-card", "render-invoice", "reindex"]
_CLIENT_ERRORS = [(400, 4), (401, 3), (403, 1), (404, 10), (409, 1), (422, 3), (429, 1)]
_SERVER_ERRORS = [(500, 5), (502, 2), (503, 3), (504, 2)]


@dataclass
class Profile:
    """What one simulated service is made of: fixed by its name."""

    routes: list[tuple[str, str, int]]
    database: tuple[str, int]
    cache: tuple[str, int]
    upstream: str
    instances: list[str]
    phase: float
    seq: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Log:
    """A simulated log: the fields of its JSON body (metadata may be None)."""

    severity: str
    payload: str
    timestamp: float
    """Seconds since the epoch."""
    metadata: dict[str, Any] | None = None
    trace_id: str | None = None
    span_id: str | None = None


class Traffic:
    """Realistic logs of any number of services, from `rng` and the time `clock` gives."""

    def __init__(self, rng: random.Random, clock: Callable[[], float]) -> None:
        self._rng = rng
        self._clock = clock
        self._salt = rng.getrandbits(32)
        self._profiles: dict[str, Profile] = {}
        self._incidents: dict[tuple[str, int], tuple[float, float] | None] = {}

    # --- how much, and how bad ---

    def error_factor(self, service: str, now: float) -> float:
        """How many times the service's usual errors it logs at `now` (drift and incidents)."""
        wave = 1.0 + 0.6 * math.sin(2 * math.pi * now / DRIFT_PERIOD + self._profile(service).phase)
        return wave * (INCIDENT_ERRORS if self.in_incident(service, now) else 1.0)

    def rate_factor(self, service: str, now: float) -> float:
        """How many times its mean rate the service logs at `now`: busier and quieter
        periods (mean 1 over a wave), and twice as busy during an incident (retries)."""
        phase = self._profile(service).phase
        wave = 1.0 + 0.4 * math.sin(2 * math.pi * now / DRIFT_PERIOD + phase + math.pi / 3)
        return wave * (2.0 if self.in_incident(service, now) else 1.0)

    def incident(self, service: str, now: float) -> tuple[float, float] | None:
        """The [start, end) of the incident of `now`'s window for `service`, if it has one."""
        window = math.floor(now / INCIDENT_WINDOW)
        key = (service, window)
        if key not in self._incidents:
            if len(self._incidents) > 10_000:  # a long run: forget the past windows
                self._incidents.clear()
            draw = random.Random(f"{self._salt}:{service}:{window}")
            span = None
            if draw.random() < INCIDENT_ODDS:
                start = window * INCIDENT_WINDOW
                start += draw.uniform(0, INCIDENT_WINDOW - INCIDENT_SECONDS)
                span = (start, start + INCIDENT_SECONDS)
            self._incidents[key] = span
        return self._incidents[key]

    def in_incident(self, service: str, now: float) -> bool:
        span = self.incident(service, now)
        return span is not None and span[0] <= now < span[1]

    # --- the logs ---

    def make(self, service: str, now: float | None = None) -> Log:
        """A log of `service` at `now` (default: the clock's time)."""
        now = self._clock() if now is None else now
        errors = self.error_factor(service, now)
        kinds = [
            (self._request, 50.0),
            (self._cache_miss, 22.0),
            (self._rows_loaded, 8.0),
            (self._job_done, 7.0),
            (self._slow_query, 4.0),
            (self._retry, 3.0 * min(errors, 3.0)),
            (self._database_error, 1.5 * errors),
            (self._upstream_error, 1.5 * errors),
            (self._fatal, 0.15 * errors),
        ]
        kind = self._rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        return kind(service, now, errors)

    def _profile(self, service: str) -> Profile:
        profile = self._profiles.get(service)
        if profile is None:
            draw = random.Random(zlib.crc32(service.encode()))
            profile = Profile(
                routes=draw.sample(_ROUTES, 6),
                database=draw.choice(_DATABASES),
                cache=draw.choice(_CACHES),
                upstream=draw.choice(_UPSTREAMS),
                # host:pid; the pid is this run's (a restarted service has a new one, its
                # seq starts again), the host the service's own
                instances=[
                    f"{service}-{draw.getrandbits(24):06x}:{self._rng.randint(100, 65000)}"
                    for _ in range(draw.randint(2, 3))
                ],
                phase=draw.uniform(0, 2 * math.pi),
            )
            self._profiles[service] = profile
        return profile

    def _request(self, service: str, now: float, errors: float) -> Log:
        rng = self._rng
        profile = self._profile(service)
        method, route, median = rng.choice(profile.routes)
        path = route.replace("{id}", str(rng.randint(1, 99_999))).replace(
            "{item}", str(rng.randint(1, 999))
        )
        server_errors = 0.015 * errors
        roll = rng.random()
        if roll < server_errors:
            status = _pick(rng, _SERVER_ERRORS)
        elif roll < server_errors + 0.06:
            status = _pick(rng, _CLIENT_ERRORS)
        else:
            status = 201 if method == "POST" else 204 if method == "DELETE" else 200
        duration = round(median * rng.lognormvariate(0, 0.6) * min(errors, 5.0) ** 0.5, 3)
        request_size = rng.randint(200, 4000) if method in ("POST", "PUT") else 0
        response_size = 0 if status == 204 else rng.randint(60, 40_000)
        instance = rng.choice(profile.instances)
        seq = profile.seq[instance] = profile.seq.get(instance, 0) + 1
        user = rng.randint(1, 5000) if route != "/healthz" and rng.random() < 0.8 else None
        metadata: dict[str, Any] = {
            "http": {
                "method": method,
                "route": route,
                "path": path,
                "status_code": status,
                "duration_ms": duration,
                "request_size": request_size,
                "response_size": response_size,
            },
            "request_id": f"{rng.getrandbits(128):032x}",
            "instance": instance,
            "seq": seq,
        }
        if user is not None:
            metadata["user_id"] = user
        severity = "error" if status >= 500 else "warn" if status >= 400 else "info"
        payload = f'"{method} {path} HTTP/1.1" {status} {response_size} {duration:.1f}ms'
        trace = f"{rng.getrandbits(128):032x}" if rng.random() < 0.7 else None
        span = f"{rng.getrandbits(64):016x}" if trace else None
        # the convention's timestamp is the request's start
        return Log(severity, payload, now - duration / 1000, metadata, trace, span)

    def _cache_miss(self, service: str, now: float, _errors: float) -> Log:
        host, port = self._profile(service).cache
        key = f"{self._rng.choice(_ENTITIES)}:{self._rng.randint(1, 99_999)}"
        ttl = self._rng.choice([30, 60, 300, 3600])
        return Log("debug", f"cache miss for key {key} on {host}:{port} (ttl {ttl}s)", now)

    def _rows_loaded(self, _service: str, now: float, _errors: float) -> Log:
        rows, ms = self._rng.randint(1, 5000), self._rng.randint(1, 400)
        table = self._rng.choice(_TABLES)
        return Log("debug", f"loaded {rows} rows from {table} in {ms} ms", now)

    def _job_done(self, _service: str, now: float, _errors: float) -> Log:
        job = self._rng.choice(_JOBS)
        job_id = f"{self._rng.getrandbits(48):012x}"
        ms = self._rng.randint(5, 3000)
        return Log("info", f"job {job} {job_id} completed in {ms} ms", now)

    def _slow_query(self, service: str, now: float, errors: float) -> Log:
        host, port = self._profile(service).database
        table = self._rng.choice(_TABLES)
        ms = int(self._rng.uniform(500, 4000) * min(errors, 4.0) ** 0.5)
        return Log("warn", f"slow query on {table} at {host}:{port} took {ms} ms", now)

    def _retry(self, service: str, now: float, _errors: float) -> Log:
        job = self._rng.choice(_JOBS)
        job_id = f"{self._rng.getrandbits(48):012x}"
        attempt = self._rng.randint(1, 5)
        delay = 100 * 2**attempt
        upstream = self._profile(service).upstream
        return Log(
            "warn",
            f"retrying {job} job {job_id} (attempt {attempt}/5) in {delay} ms:"
            f" {upstream} unavailable",
            now,
        )

    def _database_error(self, service: str, now: float, _errors: float) -> Log:
        host, port = self._profile(service).database
        attempts = self._rng.randint(1, 5)
        reason = (
            "connection refused"
            if self.in_incident(service, now)
            else self._rng.choice(_DB_REASONS)
        )
        return Log(
            "error",
            f"Failed to connect to {host}:{port} after {attempts} attempts: {reason}",
            now,
        )

    def _upstream_error(self, service: str, now: float, errors: float) -> Log:
        upstream = self._profile(service).upstream
        status = _pick(self._rng, _SERVER_ERRORS)
        ms = int(self._rng.uniform(20, 3000) * min(errors, 4.0))
        ip = f"10.{self._rng.randint(0, 3)}.{self._rng.randint(0, 255)}.{self._rng.randint(1, 254)}"
        return Log("error", f"upstream {upstream} ({ip}:8080) answered {status} after {ms} ms", now)

    def _fatal(self, service: str, now: float, _errors: float) -> Log:
        if self._rng.random() < 0.5:
            heap = self._rng.choice([512, 1024, 2048])
            worker = self._rng.randint(1, 16)
            return Log(
                "fatal", f"out of memory in worker {worker}: heap of {heap} MB exhausted", now
            )
        host, port = self._profile(service).database
        return Log("fatal", f"giving up on {host}:{port} after 10 retries, shutting down", now)


def _pick(rng: random.Random, weighted: list[tuple[int, int]]) -> int:
    return rng.choices([value for value, _ in weighted], [w for _, w in weighted])[0]
