"""`lms api`: the HTTP query API, a thin FastAPI layer over `lms.query.reader`.

- GET /v1/logs         logs, newest first, filtered, keyset-paginated
- GET /v1/services     per service, total counts per severity
- GET /v1/severity     counts per (service, severity) over minute/hour/day buckets
- GET /v1/consistency  service_logs vs service_severity, per (service, severity)
- GET /healthz         liveness (never needs the token); GET /readyz pings the database
- GET /openapi.json    the OpenAPI document (also /docs)

When API_TOKEN is set, every path but /healthz needs `Authorization: Bearer <API_TOKEN>`,
compared in constant time. Unknown query parameters and bad values are answered with 422 and
a FastAPI-style `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}` body; a database that
cannot answer gives 503 `{"detail": "..."}`.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from types import FrameType
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from lms import __version__
from lms.domain.record import MAX_CONTEXT, MAX_SERVICE_NAME
from lms.domain.timefmt import parse_timestamp, rfc3339
from lms.query.buckets import bucket_range
from lms.query.cursor import Cursor
from lms.query.errors import DatabaseUnavailable, QueryError
from lms.query.filters import DEFAULT_LIMIT, MAX_LIMIT, LogQuery
from lms.query.reader import LogReader
from lms.query.search import MAX_Q
from lms.settings import Settings

SeverityName = Literal["debug", "info", "warn", "error", "fatal"]
BucketName = Literal["minute", "hour", "day"]


def _rfc3339(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string")
    return parse_timestamp(value)


Timestamp = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_CONTEXT)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LogsParams(_Params):
    service: str | None = Field(
        None, min_length=1, max_length=MAX_SERVICE_NAME, description="exact service_name"
    )
    severity: list[SeverityName] = Field(
        default_factory=list,
        description="one severity; repeat the parameter for several (any of them matches)",
    )
    from_: Timestamp | None = Field(
        None,
        alias="from",
        description="RFC 3339; logs with timestamp >= from (inclusive)",
    )
    to: Timestamp | None = Field(None, description="RFC 3339; logs with timestamp < to (exclusive)")
    resource_id: Identifier | None = Field(None, description="exact resource_id")
    trace_id: Identifier | None = Field(None, description="exact trace_id")
    span_id: Identifier | None = Field(None, description="exact span_id")
    commit: Identifier | None = Field(None, description="exact commit")
    parent_resource_id: Identifier | None = Field(
        None, description="exact metadata.parentResourceId"
    )
    q: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_Q,
        description='full-text search of the payload: every word must occur; "quoted text"'
        " must occur as that phrase. Words of fewer than 3 characters and stopwords only"
        " count inside a phrase. Operators are not interpreted.",
    )
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="logs per page")
    cursor: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="next_cursor of the previous page, to read the following one",
    )


class SeverityParams(_Params):
    bucket: BucketName = Field("hour", description="bucket size")
    from_: Timestamp | None = Field(
        None,
        alias="from",
        description="RFC 3339, inclusive; default: to minus 1 hour (minute), 1 day (hour) or"
        " 30 days (day)",
    )
    to: Timestamp | None = Field(None, description="RFC 3339, exclusive; default: now")
    service: str | None = Field(None, min_length=1, max_length=MAX_SERVICE_NAME)


class NoParams(_Params):
    pass


class LogOut(BaseModel):
    id: int
    message_id: str
    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    service_name: str
    severity: SeverityName
    payload: str
    resource_id: str | None
    trace_id: str | None
    span_id: str | None
    commit: str | None
    metadata: dict[str, Any] | None


class LogsOut(BaseModel):
    logs: list[LogOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class ServiceOut(BaseModel):
    service_name: str
    total: int
    severity: dict[SeverityName, int]


class ServicesOut(BaseModel):
    services: list[ServiceOut]


class BucketOut(BaseModel):
    start: str = Field(json_schema_extra={"format": "date-time"})
    service_name: str
    severity: SeverityName
    count: int


class SeverityOut(BaseModel):
    bucket: BucketName
    from_: str = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str = Field(json_schema_extra={"format": "date-time"})
    buckets: list[BucketOut]


class PairOut(BaseModel):
    service_name: str
    severity: SeverityName
    logs: int = Field(description="COUNT(*) of service_logs")
    severity_total: int = Field(description="SUM(count) of service_severity")
    agree: bool


class ConsistencyOut(BaseModel):
    consistent: bool
    pairs: list[PairOut]


class Status(BaseModel):
    status: str


class Problem(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "the database cannot answer"},
}


def create_app(settings: Settings, reader: LogReader | None = None) -> FastAPI:
    """The API app; `reader` defaults to a pooled LogReader on `settings`' database."""
    reader = reader or LogReader(
        settings, pool_size=settings.api_pool_size, timeout=settings.api_query_timeout
    )
    token = settings.api_token.get_secret_value() if settings.api_token else ""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await reader.close()

    app = FastAPI(
        title="LMS query API",
        version=__version__,
        description="Read the logs LMS stored: filter, search and page through them, and"
        " check the per-severity counters. Timestamps are RFC 3339, in UTC.",
        lifespan=lifespan,
    )
    app.state.reader = reader
    secured: list[Any] = []
    responses = dict(_ERRORS)
    if token:
        secured = [Depends(HTTPBearer(auto_error=False, description="Bearer <API_TOKEN>"))]
        responses[401] = {"model": Problem, "description": "missing or wrong bearer token"}
    v1 = APIRouter(prefix="/v1", dependencies=secured, responses=responses)

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if token and request.url.path != "/healthz" and not _authorized(request, token):
            return JSONResponse(
                {"detail": "missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)

    @app.exception_handler(QueryError)
    async def query_error(_request: Request, exc: QueryError) -> JSONResponse:
        detail = [{"type": "value_error", "loc": ["query", exc.field], "msg": exc.message}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(DatabaseUnavailable)
    async def unavailable(_request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @v1.get("/logs", response_model=LogsOut, summary="Logs, newest first")
    async def logs(params: Annotated[LogsParams, Query()]) -> dict[str, Any]:
        """Logs matching every given filter, newest first (by timestamp, then id).

        Page with `limit` and `cursor`: pass `next_cursor` back as `cursor` until it is
        null. Pages never repeat or skip a log, even while new ones arrive.
        """
        query = LogQuery(
            service=params.service,
            severities=tuple(params.severity),
            since=params.from_,
            until=params.to,
            resource_id=params.resource_id,
            trace_id=params.trace_id,
            span_id=params.span_id,
            commit=params.commit,
            parent_resource_id=params.parent_resource_id,
            q=params.q,
            limit=params.limit,
            cursor=Cursor.decode(params.cursor) if params.cursor is not None else None,
        )
        page = await reader.logs(query)
        return {"logs": [e.as_json() for e in page.logs], "next_cursor": page.next_cursor}

    @v1.get("/services", response_model=ServicesOut, summary="Services and their counts")
    async def services(_params: Annotated[NoParams, Query()]) -> dict[str, Any]:
        """Every service with its total log count per severity (from service_severity)."""
        rows = await reader.services()
        return {
            "services": [
                {"service_name": s.service_name, "total": s.total, "severity": s.counts}
                for s in rows
            ]
        }

    @v1.get("/severity", response_model=SeverityOut, summary="Counts over time")
    async def severity(params: Annotated[SeverityParams, Query()]) -> dict[str, Any]:
        """Logs stored per (service, severity) in each time bucket of [from, to).

        Buckets are by the time their batch was committed (service_severity.created_at,
        UTC); buckets without logs are left out. At most 10,000 buckets per request.
        """
        since, until = bucket_range(params.bucket, params.from_, params.to)
        rows = await reader.severity_buckets(params.bucket, since, until, params.service)
        return {
            "bucket": params.bucket,
            "from": rfc3339(since),
            "to": rfc3339(until),
            "buckets": [
                {
                    "start": rfc3339(b.start),
                    "service_name": b.service_name,
                    "severity": b.severity,
                    "count": b.count,
                }
                for b in rows
            ],
        }

    @v1.get("/consistency", response_model=ConsistencyOut, summary="Counter consistency")
    async def consistency(_params: Annotated[NoParams, Query()]) -> dict[str, Any]:
        """Per (service, severity): COUNT(*) of service_logs against SUM(count) of
        service_severity, read in one snapshot; `consistent` is true when all agree."""
        result = await reader.consistency()
        return {
            "consistent": result.consistent,
            "pairs": [
                {
                    "service_name": r.service_name,
                    "severity": r.severity,
                    "logs": r.logs,
                    "severity_total": r.severity_total,
                    "agree": r.agree,
                }
                for r in result.rows
            ],
        }

    @app.get("/healthz", response_model=Status, summary="Liveness")
    async def healthz(_params: Annotated[NoParams, Query()]) -> dict[str, str]:
        """200 while the API process serves requests; never needs the token."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Status,
        summary="Readiness",
        dependencies=secured,
        responses=responses,
    )
    async def readyz(_params: Annotated[NoParams, Query()]) -> dict[str, str]:
        """200 when the database answers, 503 otherwise."""
        await reader.ping()
        return {"status": "ready"}

    app.include_router(v1)
    return app


def _authorized(request: Request, token: str) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown (exit -15); like
        `lms mon`, a requested stop is a clean exit here: status 0."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return Server


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the API under uvicorn until SIGINT/SIGTERM."""
    import uvicorn  # only `lms api` needs it

    config = uvicorn.Config(
        create_app(settings),
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level,
        server_header=False,
    )
    _server_class()(config).run()
