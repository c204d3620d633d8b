"""`lms api`: the HTTP query API, a thin FastAPI layer over `lms.query.reader`.

- GET /v1/logs         logs, newest first, filtered, keyset-paginated
- GET /v1/services     per service, total counts per severity
- GET /v1/severity     counts per (service, severity) over minute/hour/day buckets
- GET /v1/consistency  service_logs vs service_severity, per (service, severity)
- GET /healthz         liveness (never needs the token); GET /readyz pings the database
- GET /openapi.json    the OpenAPI document (also /docs)

When API_TOKEN is set, every path but /healthz needs `Authorization: Bearer <API_TOKEN>`
(lms.api.auth). Unknown query parameters and bad values are answered with 422 and a
FastAPI-style `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}` body; a database that
cannot answer gives 503 `{"detail": "..."}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lms import __version__
from lms.api.auth import AccessMiddleware, allowed_hosts, document_security
from lms.api.routers import health, logs, stats
from lms.api.schemas import ERRORS
from lms.query.errors import DatabaseUnavailable, QueryError
from lms.query.reader import LogReader
from lms.settings import Settings


def create_app(settings: Settings, reader: LogReader | None = None) -> FastAPI:
    """The API app; `reader` defaults to a pooled LogReader on `settings`' database."""
    app = FastAPI(
        title="LMS query API",
        version=__version__,
        description="Read the logs LMS stored: filter, search and page through them, and"
        " check the per-severity counters. Timestamps are RFC 3339, in UTC.",
        lifespan=_lifespan,
        exception_handlers={QueryError: _invalid_query, DatabaseUnavailable: _unavailable},
    )
    app.state.reader = reader or LogReader(
        settings, pool_size=settings.api_pool_size, timeout=settings.api_query_timeout
    )
    app.include_router(logs.router, prefix="/v1", responses=ERRORS)
    app.include_router(stats.router, prefix="/v1", responses=ERRORS)
    app.include_router(health.router)
    read_token = settings.api_token.get_secret_value() if settings.api_token else None
    ingest_tokens = settings.ingest_token_list
    hosts = allowed_hosts(settings)
    if read_token or ingest_tokens or hosts is not None:
        app.add_middleware(
            AccessMiddleware, read_token=read_token, ingest_tokens=ingest_tokens, hosts=hosts
        )
    if read_token or ingest_tokens:
        app.openapi_schema = document_security(
            app.openapi(), read=bool(read_token), ingest=bool(ingest_tokens)
        )
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        reader: LogReader = app.state.reader
        await reader.close()


async def _invalid_query(_request: Request, exc: QueryError) -> Response:
    """A QueryError (a rule the schema cannot express) as the 422 body FastAPI gives for the
    rules it can, so that clients handle one shape."""
    detail = [{"type": "value_error", "loc": ["query", exc.field], "msg": exc.message}]
    return JSONResponse({"detail": detail}, status_code=422)


async def _unavailable(_request: Request, exc: DatabaseUnavailable) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=503)
