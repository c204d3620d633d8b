"""The operations port of `lms mon`: `/metrics`, `/healthz` and `/readyz` on one small server.

- `/metrics`: every metric of the default prometheus-client registry (LMS's own and the
  process/platform/GC collectors), in the text format or OpenMetrics as the scraper asks.
- `/healthz`: 200 while the event loop serves requests at all (liveness).
- `/readyz`: 200 only while the database answers and the subscriber is pulling; otherwise 503
  with a JSON body `{"ready": false, "reason": "...", "checks": {...}}` (readiness).

aiohttp serves it inside the monitor's own event loop: no thread, no signal handlers of its
own (so SIGTERM stays the monitor's), and no access log line per scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from lms.store.errors import error_code

log = structlog.get_logger(__name__)

READY_TIMEOUT = 2.0
"""Seconds a readiness ping of the database may take before it counts as unreachable."""
READY_CACHE = 1.0
"""Seconds a ping result is reused, so frequent probes never hammer the database."""


class ReadinessCheck:
    """Is the monitor ready? The database must answer and the subscriber must be running.

    The ping result is cached for `cache_for` seconds and concurrent probes share one ping.
    """

    def __init__(
        self,
        subscriber_running: Callable[[], bool],
        ping: Callable[[], Awaitable[None]],
        timeout: float = READY_TIMEOUT,
        cache_for: float = READY_CACHE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subscriber_running = subscriber_running
        self._ping = ping
        self._timeout = timeout
        self._cache_for = cache_for
        self._clock = clock
        self._lock = asyncio.Lock()
        self._checked_at: float | None = None
        self._db_error: str | None = None

    async def check(self) -> tuple[str | None, dict[str, str]]:
        """(None, checks) when ready, else (the reason, checks)."""
        db_error = await self._database()
        running = self._subscriber_running()
        checks = {
            "database": "ok" if db_error is None else db_error,
            "subscriber": "running" if running else "not running",
        }
        if db_error is not None:
            return f"database unreachable: {db_error}", checks
        if not running:
            return "subscriber not running", checks
        return None, checks

    async def _database(self) -> str | None:
        async with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= self._cache_for:
                self._db_error = await self._ping_once()
                self._checked_at = self._clock()
            return self._db_error

    async def _ping_once(self) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._ping()
        except TimeoutError:
            return f"no answer within {self._timeout:g}s"
        except Exception as exc:
            # The body names the failure, never what the server said (user names, hosts):
            # that goes to the log, once per change.
            code = error_code(exc)
            short = f"MySQL error {code}" if code is not None else type(exc).__name__
            if short != self._db_error:
                log.warning("readiness ping failed", error=repr(exc))
            return short
        return None


class HealthServer:
    """`/metrics`, `/healthz` and `/readyz` on host:port; port 0 disables the server."""

    def __init__(
        self,
        host: str,
        port: int,
        readiness: ReadinessCheck,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.host = host
        self.port = port
        self._readiness = readiness
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self._was_ready: bool | None = None

    @property
    def enabled(self) -> bool:
        return self.port != 0

    async def start(self) -> None:
        if not self.enabled:
            log.info("metrics and health server disabled (METRICS_PORT=0)")
            return
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise RuntimeError(
                f"cannot serve metrics on METRICS_HOST={self.host} METRICS_PORT={self.port}:"
                f" {exc.strerror or exc}"
            ) from exc
        self._runner = runner
        log.info(
            "serving metrics and health",
            url=f"http://{self.host}:{self.port}/metrics",
            endpoints=["/metrics", "/healthz", "/readyz"],
        )

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="lms mon: /metrics /healthz /readyz\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self._registry), headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        reason, checks = await self._readiness.check()
        ready = reason is None
        if ready != self._was_ready:
            # One line per change of state, not one per probe.
            if ready:
                log.info("ready", checks=checks)
            elif self._was_ready is not None:
                log.warning("not ready", reason=reason, checks=checks)
            self._was_ready = ready
        body: dict[str, object] = {"ready": ready, "checks": checks}
        if reason is not None:
            body["reason"] = reason
        return web.json_response(body, status=200 if ready else 503)
