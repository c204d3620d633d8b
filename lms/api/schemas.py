"""What the API reads and answers: its query parameters and response bodies.

The parameter models carry LogQuery's own field names (the HTTP names are their aliases), so
`LogQuery.from_input` maps them without a field-by-field copy. The per-row response models
are the TypedDicts of lms.query.results, the same shape `lms logs --json` prints; only what
OpenAPI says about them beyond their types is added here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    with_config,
)

from lms.domain.record import MAX_CONTEXT, MAX_SERVICE_NAME
from lms.domain.severity import SeverityName
from lms.domain.timefmt import parse_timestamp
from lms.ops.pipeline_state import PipelineJson
from lms.query.buckets import Bucket
from lms.query.cursor import MAX_CURSOR
from lms.query.export import ExportFormat
from lms.query.facets import (
    DEFAULT_FIELDS,
    DEFAULT_VALUES,
    FACET_FIELDS,
    MAX_VALUES,
    FacetValueJson,
)
from lms.query.filters import DEFAULT_LIMIT, MAX_LIMIT, exact_problem
from lms.query.patterns import DEFAULT_PATTERNS, MAX_PATTERNS, PatternJson, TrendBucket
from lms.query.requests import (
    DEFAULT_ROUTES,
    DEFAULT_USERS,
    MAX_METHOD,
    MAX_ROUTES,
    MIN_COUNT,
    LatencyJson,
    RouteBucketJson,
    RouteJson,
    UserJson,
)
from lms.query.results import BucketJson, LogJson, PairJson, ServiceJson
from lms.query.search import MAX_Q
from lms.query.timebuckets import BucketSize
from lms.query.volume import (
    DEFAULT_TOP,
    MAX_TOP,
    ErrorBucketJson,
    OtherErrorsJson,
    ServiceErrorsJson,
    VolumeBucketJson,
)


def _rfc3339(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string")
    return parse_timestamp(value)


Timestamp = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def exact(value: str) -> str:
    """A 422 for what no stored name or id can be (lms.query.filters.exact_problem)."""
    problem = exact_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Identifier = Annotated[str, Field(min_length=1, max_length=MAX_CONTEXT), AfterValidator(exact)]
ServiceName = Annotated[
    str, Field(min_length=1, max_length=MAX_SERVICE_NAME), AfterValidator(exact)
]


def _pattern(value: str) -> int:
    if len(value) != 16 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError("must be 16 hex digits, the pattern_id of GET /v1/analytics/patterns")
    return int(value, 16)


Method = Annotated[str, Field(min_length=1, max_length=MAX_METHOD), AfterValidator(exact)]


PatternId = Annotated[
    int,
    BeforeValidator(_pattern),
    WithJsonSchema({"type": "string", "pattern": "^[0-9a-fA-F]{16}$"}),
]
Cursor = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_CURSOR,
        description="next_cursor of the previous page, to read the following one",
    ),
]
"""A listing's own next_cursor, checked by its kind (lms.query.cursor) beyond its length."""

# --- parameters ----------------------------------------------------------------------------


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LogFilterParams(_Params):
    """The filters of GET /v1/logs, shared by its export and the analytics endpoints."""

    service: ServiceName | None = Field(None, description="exact service_name")
    severities: list[SeverityName] = Field(
        default_factory=list,
        alias="severity",
        description="one severity; repeat the parameter for several (any of them matches)",
    )
    since: Timestamp | None = Field(
        None,
        alias="from",
        description="RFC 3339; logs with timestamp >= from (inclusive)",
    )
    until: Timestamp | None = Field(
        None, alias="to", description="RFC 3339; logs with timestamp < to (exclusive)"
    )
    resource_id: Identifier | None = Field(None, description="exact resource_id")
    trace_id: Identifier | None = Field(None, description="exact trace_id")
    span_id: Identifier | None = Field(None, description="exact span_id")
    commit: Identifier | None = Field(None, description="exact commit")
    parent_resource_id: Identifier | None = Field(
        None, description="exact metadata.parentResourceId"
    )
    user_id: Identifier | None = Field(
        None, description='exact metadata.user_id (an integer as its digits: 42 finds 42 and "42")'
    )
    pattern_id: PatternId | None = Field(
        None,
        alias="pattern",
        description="a pattern_id of GET /v1/analytics/patterns: the logs of that template",
    )
    q: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_Q,
        description='full-text search of the payload: every word must occur; "quoted text"'
        " must occur as that phrase. Words of fewer than 3 characters and stopwords only"
        " count inside a phrase. Operators are not interpreted.",
    )


class LogsParams(LogFilterParams):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="logs per page")
    cursor: Cursor | None = None


class ExportParams(LogFilterParams):
    format: ExportFormat = Field(description="ndjson: the items of GET /v1/logs, one a line; csv")


class FacetsParams(LogFilterParams):
    """GET /v1/logs' filters, the fields to count and how many values of each."""

    fields: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description=f"comma-separated fields among {', '.join(FACET_FIELDS)}; default"
        f" {','.join(DEFAULT_FIELDS)}",
    )
    limit: int = Field(
        DEFAULT_VALUES, ge=1, le=MAX_VALUES, description="top values per field, most frequent"
    )


class SeriesParams(_Params):
    """The range, bucket, zone and comparison of every series over time."""

    since: Timestamp | None = Field(
        None,
        alias="from",
        description="RFC 3339; logs with timestamp >= from; default: to minus 1 hour"
        " (minute buckets), 1 day (hour), 30 days (day) or 26 weeks (week)",
    )
    until: Timestamp | None = Field(
        None, alias="to", description="RFC 3339; logs with timestamp < to; default: now"
    )
    bucket: BucketSize = Field("hour", description="bucket size, by the log's own timestamp")
    tz: str = Field(
        "UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone of the bucket boundaries (local minute, hour, midnight,"
        " Monday); a day is 23 or 25 hours on a daylight-saving change",
    )
    compare: Literal["previous"] | None = Field(
        None,
        description="previous: also the same figures for the as many buckets just before"
        " (`previous` in the answer)",
    )


class AnalyticsParams(SeriesParams, LogFilterParams):
    """A series over time: GET /v1/logs' filters, the bucket, its zone, the comparison."""


class ErrorsParams(AnalyticsParams):
    top: int = Field(
        DEFAULT_TOP,
        ge=1,
        le=MAX_TOP,
        description="services (most errors first) that get their buckets; the rest are"
        " summed in `other`",
    )


class RequestAnalyticsParams(SeriesParams):
    """The request figures: a series' range and buckets, and the rollup's keys. No other
    filter of GET /v1/logs (422: the rollup cannot answer it exactly)."""

    bucket: BucketSize | None = Field(  # type: ignore[assignment]
        None,
        description="bucket size, by the log's own timestamp; default: hour for a range up to"
        " 14 days (and without `from`), day up to 366 days, week beyond",
    )
    service: ServiceName | None = Field(None, description="exact service_name")
    route: Identifier | None = Field(
        None,
        description="exact route template, as the answer's `route` (metadata.http.route, or"
        " the fallback of a path)",
    )
    method: Method | None = Field(None, description="exact metadata.http.method (GET, POST...)")
    limit: int = Field(
        DEFAULT_ROUTES,
        ge=1,
        le=MAX_ROUTES,
        description="routes in `routes` (most requests first, each with its buckets),"
        " `slowest` and `failing`",
    )
    users: int = Field(
        DEFAULT_USERS, ge=1, le=MAX_ROUTES, description="users in `users`, most requests first"
    )
    min_count: int = Field(
        MIN_COUNT,
        ge=1,
        description="requests a route needs in the range to be ranked in `slowest` and `failing`",
    )


class RequestsParams(_Params):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="requests per page")
    cursor: Cursor | None = None


class SeverityParams(_Params):
    bucket: Bucket = Field("hour", description="bucket size")
    since: Timestamp | None = Field(
        None,
        alias="from",
        description="RFC 3339, inclusive; default: to minus 1 hour (minute), 1 day (hour) or"
        " 30 days (day)",
    )
    until: Timestamp | None = Field(
        None, alias="to", description="RFC 3339, exclusive; default: now"
    )
    service: ServiceName | None = Field(None, description="exact service_name")


class PatternsParams(_Params):
    limit: int = Field(
        DEFAULT_PATTERNS, ge=1, le=MAX_PATTERNS, description="the K most frequent patterns"
    )
    since: Timestamp | None = Field(
        None, alias="from", description="RFC 3339, inclusive; default: unbounded"
    )
    until: Timestamp | None = Field(
        None, alias="to", description="RFC 3339, exclusive; default: unbounded"
    )
    service: ServiceName | None = Field(None, description="exact service_name")
    severities: list[SeverityName] = Field(
        default_factory=list,
        alias="severity",
        description="one severity; repeat the parameter for several (any of them matches)",
    )
    bucket: TrendBucket = Field("hour", description="bucket size of each pattern's trend")


class NoParams(_Params):
    pass


# --- responses -----------------------------------------------------------------------------

_DATE_TIME: dict[str, Any] = {"format": "date-time"}


def _documented(**properties: dict[str, Any]) -> ConfigDict:
    """Adds to the JSON schema of a results TypedDict what its plain types cannot say."""

    def extend(schema: dict[str, Any]) -> None:
        for name, extra in properties.items():
            schema["properties"][name].update(extra)

    return ConfigDict(json_schema_extra=extend)


# Subclasses, not the results TypedDicts themselves, so that OpenAPI names them *Out as
# before and the results module stays free of pydantic.


@with_config(_documented(timestamp=_DATE_TIME))
class LogOut(LogJson):
    pass


class ServiceOut(ServiceJson):
    pass


@with_config(_documented(start=_DATE_TIME))
class BucketOut(BucketJson):
    pass


@with_config(
    _documented(
        logs={"description": "COUNT(*) of service_logs"},
        severity_total={"description": "SUM(count) of service_severity"},
    )
)
class PairOut(PairJson):
    pass


class LogsOut(BaseModel):
    logs: list[LogOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class RequestsOut(BaseModel):
    requests: list[LogOut] = Field(
        description="the user's request logs, oldest first, each as GET /v1/logs gives it"
    )
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class ServicesOut(BaseModel):
    services: list[ServiceOut]


class SeverityOut(BaseModel):
    bucket: Bucket
    from_: str = Field(alias="from", json_schema_extra=_DATE_TIME)
    to: str = Field(json_schema_extra=_DATE_TIME)
    buckets: list[BucketOut]


@with_config(_documented(start=_DATE_TIME))
class VolumeBucketOut(VolumeBucketJson):
    pass


class VolumeSeriesOut(BaseModel):
    from_: str = Field(alias="from", json_schema_extra=_DATE_TIME)
    to: str = Field(json_schema_extra=_DATE_TIME)
    total: int = Field(description="logs in [from, to)")
    buckets: list[VolumeBucketOut] = Field(
        description="every bucket of the range, oldest first, empty ones as zeros; the first"
        " and last count only what lies in [from, to)"
    )


class VolumeOut(VolumeSeriesOut):
    bucket: BucketSize
    tz: str
    previous: VolumeSeriesOut | None = Field(
        None, description="with compare=previous: the as many buckets just before"
    )


@with_config(_documented(start=_DATE_TIME))
class ErrorBucketOut(ErrorBucketJson):
    pass


@with_config(_documented(rate={"description": "errors / total; null when total is 0"}))
class ServiceErrorsOut(ServiceErrorsJson):
    pass


class OtherErrorsOut(OtherErrorsJson):
    pass


class ErrorSeriesOut(BaseModel):
    from_: str = Field(alias="from", json_schema_extra=_DATE_TIME)
    to: str = Field(json_schema_extra=_DATE_TIME)
    services: list[ServiceErrorsOut] = Field(
        description="the `top` services with logs in the range, most errors (error + fatal)"
        " first (then by name), each with every bucket of the range"
    )
    other: OtherErrorsOut = Field(description="the services beyond `top`, summed")


class ErrorsOut(ErrorSeriesOut):
    bucket: BucketSize
    tz: str
    previous: ErrorSeriesOut | None = Field(
        None, description="with compare=previous: the as many buckets just before"
    )


_LATENCY = _documented(
    rate_4xx={"description": "count_4xx / count; null when count is 0"},
    rate_5xx={"description": "count_5xx / count; null when count is 0"},
    avg_ms={"description": "exact mean of metadata.http.duration_ms; null: no request"},
    p50_ms={"description": "median from the latency histogram (see `accuracy`); null: none"},
    p95_ms={"description": "95th percentile, as p50_ms"},
    p99_ms={"description": "99th percentile, as p50_ms"},
)


@with_config(_LATENCY)
class LatencyOut(LatencyJson):
    pass


@with_config(
    _documented(
        start=_DATE_TIME,
        rate_4xx={"description": "count_4xx / count; null when count is 0"},
        rate_5xx={"description": "count_5xx / count; null when count is 0"},
        avg_ms={"description": "null for an empty bucket"},
        p50_ms={"description": "null for an empty bucket"},
        p95_ms={"description": "null for an empty bucket"},
        p99_ms={"description": "null for an empty bucket"},
    )
)
class RouteBucketOut(RouteBucketJson):
    pass


@with_config(_LATENCY)
class RouteOut(RouteJson):
    pass


@with_config(_LATENCY)
class RouteSeriesOut(RouteOut):
    buckets: list[RouteBucketOut]


@with_config(_documented(last_seen=_DATE_TIME))
class UserOut(UserJson):
    pass


class RequestFiguresOut(BaseModel):
    since: str = Field(json_schema_extra=_DATE_TIME)
    until: str = Field(json_schema_extra=_DATE_TIME)
    accuracy: str = Field(description="how exact the percentiles are (the counts are exact)")
    totals: LatencyOut = Field(description="every request of the filters in the range")
    routes: list[RouteSeriesOut] = Field(
        description="the `limit` (service, route, method) with most requests, most first,"
        " each with every bucket of the range (empty ones as zeros, null latencies)"
    )
    slowest: list[RouteOut] = Field(
        description="the `limit` routes of at least `min_count` requests with the highest p95_ms"
    )
    failing: list[RouteOut] = Field(
        description="the `limit` routes of at least `min_count` requests with failures, by"
        " (count_4xx + count_5xx) / count, highest first"
    )
    users: list[UserOut] = Field(
        description="the `users` users (metadata.user_id) with most requests in the range"
        " and service (route and method do not narrow them), with their last request's"
        " timestamp"
    )


class RequestsFiguresOut(RequestFiguresOut):
    bucket: BucketSize
    tz: str
    previous: RequestFiguresOut | None = Field(
        None, description="with compare=previous: the same figures for the range just before"
    )


class FacetValueOut(FacetValueJson):
    pass


class FacetsOut(BaseModel):
    facets: dict[str, list[FacetValueOut]] = Field(
        description="per field asked for, its top values with their counts, most frequent"
        " first (ties by value); null values are not counted"
    )
    scanned: int = Field(
        description="matching logs the sampled counts were taken from: at most"
        " FACETS_MAX_ROWS, the newest ones (every matching log when no field was sampled)"
    )
    complete: bool = Field(
        description="true: every count is exact (the sample held every matching log, or"
        " the counts came from the rollups); false: counts are of the newest `scanned` logs"
    )


@with_config(
    _documented(
        state={
            "description": "ok: lms mon answers and commits; down: unreachable, not lms mon's"
            " metrics, or stalled (messages held, no commit for 5 x FLUSHINTERVAL);"
            " unknown: MON_METRICS_URL is not set"
        },
        source={"description": "MON_METRICS_URL, the metrics read; null when unset"},
        last_commit={
            **_DATE_TIME,
            "description": "the last batch commit (lms_last_commit_timestamp_seconds); null"
            " before the first one or when unreadable",
        },
        lag_seconds={
            "description": "at the last commit, how long its oldest message had waited since"
            " it was published (lms_commit_lag_seconds)"
        },
        outstanding={
            "description": "messages received and not yet acked (lms_outstanding_messages)"
        },
        detail={"description": "why the state is not ok, or what is worth knowing; null"},
    )
)
class PipelineOut(PipelineJson):
    pass


class ConsistencyOut(BaseModel):
    consistent: bool
    pairs: list[PairOut]


@with_config(_documented(pattern_id={"pattern": "^[0-9a-f]{16}$"}))
class PatternOut(PatternJson):
    pass


class PatternsOut(BaseModel):
    patterns: list[PatternOut] = Field(description="most frequent first, exact counts")


class Status(BaseModel):
    status: str


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "the database cannot answer"},
}
"""The error every endpoint that reads the database may answer."""


# --- ingestion -----------------------------------------------------------------------------


class RejectedLog(BaseModel):
    index: int = Field(description="position in the array, or line number (from 0) of NDJSON")
    reason: str = Field(description="a fixed word: invalid_field, missing_field, invalid_id, ...")
    detail: str = Field(description="what is wrong, for people")


class IngestResult(BaseModel):
    accepted: int = Field(description="logs published and confirmed by Pub/Sub")
    rejected: list[RejectedLog] = Field(description="the logs not published, in body order")
