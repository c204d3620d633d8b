"""`lms api`: the HTTP query API over `lms.query.reader` and HTTP ingestion to Pub/Sub.

- GET /v1/logs         logs, newest first, filtered, keyset-paginated
- GET /v1/logs/facets  the top values of the filter fields among the matching logs
- GET /v1/services     per service, total counts per severity
- GET /v1/severity     counts per (service, severity) over minute/hour/day buckets
- GET /v1/consistency  service_logs vs service_severity, per (service, severity)
- GET /v1/users/{user_id}/requests  one user's request logs, oldest first, keyset-paginated
- GET /v1/analytics/patterns  the most frequent message templates, exact counts and trends
- GET /v1/analytics/volume, /v1/analytics/errors  counts and error rates over time buckets
                       of the logs' own timestamps, with any /v1/logs filter (cacheable)
- GET /v1/analytics/requests  HTTP request counts, 4xx/5xx rates and latency by route
- GET /v1/pipeline     lms mon's state (last commit, lag, outstanding) from its metrics
- POST /v1/logs        HTTP ingestion of native JSON/NDJSON logs, published to Pub/Sub
- POST /otlp/v1/logs, /loki/api/v1/push, /_bulk (and Elasticsearch's probes): the same for
                       OpenTelemetry, Loki and Elasticsearch shippers
- GET /healthz         liveness (never needs the token); GET /readyz pings the database
                       (API_QUERY) and asks Pub/Sub for the topic (API_INGEST)
- GET /metrics         Prometheus metrics of this process (lms.ops.api_metrics)
- GET /openapi.json    the OpenAPI document (also /docs)
- GET /ui/...          the web UI (lms.ui; docs/ui.md), also at GET / for a browser (an
                       Accept naming text/html), where other clients get Elasticsearch's info

The parts are separate routers: API_QUERY turns the query API (and its database pool) off,
API_INGEST the ingestion endpoints (and their Pub/Sub publisher), so one fleet can ingest
only and another node only answer queries; API_UI turns the web UI off.

Who may call what (lms.api.auth): ingestion needs one of INGEST_TOKENS when set, every other
path but /healthz needs API_TOKEN when set, and on loopback the Host header must be allowed.
Unknown query parameters and bad values are answered with 422 and a
FastAPI-style `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}` body (an aggregate over
API_MAX_BUCKETS too, `type` too_many_buckets); a database that cannot answer gives 503
`{"detail": "<short reason>"}` on every endpoint, its driver's text logged, never sent.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from google.auth.exceptions import DefaultCredentialsError

from lms import __version__
from lms.api.auth import AccessMiddleware, allowed_hosts, document_security
from lms.api.ingestion import ingest_error
from lms.api.routers import (
    elastic,
    health,
    ingest,
    logs,
    loki,
    metrics,
    otlp,
    pipeline,
    stats,
    users,
)
from lms.api.routers.analytics import patterns as analytics_patterns
from lms.api.routers.analytics import requests as analytics_requests
from lms.api.routers.analytics import volume as analytics_volume
from lms.api.schemas import ERRORS
from lms.ingest.http.errors import IngestError
from lms.ingest.http.publisher import LogPublisher
from lms.ops import api_metrics
from lms.query.errors import DatabaseUnavailable, QueryError
from lms.query.reader import LogReader
from lms.settings import Settings
from lms.ui import UIMiddleware, warn_if_not_built
from lms.ui import routes as ui_routes

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings, reader: LogReader | None = None, publisher: LogPublisher | None = None
) -> FastAPI:
    """The API app with the parts `settings` turn on; `reader` defaults to a pooled
    LogReader on `settings`' database (made only with API_QUERY on), `publisher` to a
    LogPublisher made when the app starts (with API_INGEST on); a given one is the caller's
    to close."""
    app = FastAPI(
        title="LMS API",
        version=__version__,
        description="Send logs to LMS over HTTP, and read the logs it stored: filter, search"
        " and page through them, and check the per-severity counters. Timestamps are"
        " RFC 3339, in UTC.",
        lifespan=_lifespan,
        exception_handlers={
            QueryError: _invalid_query,
            DatabaseUnavailable: _unavailable,
            IngestError: ingest_error,
        },
    )
    app.state.settings = settings
    app.state.reader = None
    app.state.publisher = publisher
    if settings.api_query:
        app.state.reader = reader or LogReader(
            settings, pool_size=settings.api_pool_size, timeout=settings.api_query_timeout
        )
        app.include_router(logs.router, prefix="/v1", responses=ERRORS)
        app.include_router(stats.router, prefix="/v1", responses=ERRORS)
        app.include_router(users.router, prefix="/v1", responses=ERRORS)
        app.include_router(analytics_patterns.router, prefix="/v1/analytics", responses=ERRORS)
        app.include_router(analytics_volume.router, prefix="/v1/analytics", responses=ERRORS)
        app.include_router(analytics_requests.router, prefix="/v1/analytics", responses=ERRORS)
        app.include_router(pipeline.router, prefix="/v1")
    if settings.api_ingest:
        app.include_router(ingest.router, prefix="/v1")
        app.include_router(otlp.router)
        app.include_router(loki.router)
        app.include_router(elastic.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    read_token = settings.api_token.get_secret_value() if settings.api_token else None
    ingest_tokens = settings.ingest_token_list
    hosts = allowed_hosts(settings)
    if read_token or ingest_tokens or hosts is not None:
        app.add_middleware(
            AccessMiddleware, read_token=read_token, ingest_tokens=ingest_tokens, hosts=hosts
        )
    if settings.api_ui:
        app.router.routes.extend(ui_routes())
        # After AccessMiddleware: outermost, so the page's path is rewritten before the
        # access rules see it.
        app.add_middleware(UIMiddleware)
        warn_if_not_built()
    if read_token or ingest_tokens:
        app.openapi_schema = document_security(
            app.openapi(), read=bool(read_token), ingest=bool(ingest_tokens)
        )
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The publisher starts with the app (its client threads belong to the serving process,
    which a worker of API_WORKERS > 1 is not until it runs) and flushes at shutdown."""
    settings: Settings = app.state.settings
    owned = settings.api_ingest and app.state.publisher is None
    if owned:
        try:
            publisher = LogPublisher(settings, on_inflight=api_metrics.inflight_changed)
            publisher.connect()
        except DefaultCredentialsError as exc:
            raise RuntimeError(
                "API_INGEST is on, but there are no Pub/Sub credentials to publish with: set"
                " PUBSUB_EMULATOR_HOST or Google credentials, or API_INGEST=false for a"
                " query-only lms api"
            ) from exc
        app.state.publisher = publisher
    sampler = (
        asyncio.create_task(api_metrics.sample_worker_rss()) if api_metrics.MULTIPROCESS else None
    )
    # What start-up made (the modules, routes, models, settings) leaves the collector's
    # generations: an answer of 100,000 objects (a month of hourly route buckets) triggered
    # full collections that walked all of it, 0-90 ms of its time (bench/query.py).
    gc.freeze()
    try:
        yield
    finally:
        if sampler is not None:
            sampler.cancel()
        if owned:
            await app.state.publisher.close()
            app.state.publisher = None
        if app.state.reader is not None:
            await app.state.reader.close()
        api_metrics.worker_stopped()
        # Collectable again: a process that starts apps one after another (the tests, the
        # benchmarks) would otherwise keep every stopped app's garbage for good.
        gc.unfreeze()


async def _invalid_query(_request: Request, exc: QueryError) -> Response:
    """A QueryError (a rule the schema cannot express) as the 422 body FastAPI gives for the
    rules it can, so that clients handle one shape."""
    loc = ["query", exc.field] if exc.field else ["query"]
    detail = [{"type": exc.kind, "loc": loc, "msg": exc.message}]
    return JSONResponse({"detail": detail}, status_code=422)


async def _unavailable(request: Request, exc: DatabaseUnavailable) -> Response:
    """503 with the short reason only: the driver's text names users, hosts and tables, so
    it goes to the log, for the operator."""
    log.warning("database unavailable", path=request.url.path, reason=exc.reason, detail=exc.detail)
    return JSONResponse({"detail": exc.reason}, status_code=503)
