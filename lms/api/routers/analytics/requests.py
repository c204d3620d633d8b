"""GET /v1/analytics/requests: the HTTP request figures of the logs that follow lms_client's
request convention (lms.query.requests), cached like the volume
(lms.api.routers.analytics.caching)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from lms.api.dependencies import AppSettings, Reader
from lms.api.routers.analytics.caching import CACHING, cached_answer
from lms.api.schemas import RequestAnalyticsParams, RequestsFiguresOut
from lms.query.filters import LogQuery
from lms.query.requests import RequestsRequest, default_bucket, request_figures
from lms.query.volume import SeriesRequest

router = APIRouter()


@router.get(
    "/requests",
    response_model=RequestsFiguresOut,
    responses=CACHING,
    summary="HTTP request counts, failure rates and latency",
)
async def request_series(
    params: Annotated[RequestAnalyticsParams, Query()],
    request: Request,
    reader: Reader,
    settings: AppSettings,
) -> Response:
    """Request figures by route template, from the logs of lms_client's request-logging
    middleware: a log counts as a request when its `metadata.http` has `status_code` (a
    number with no fraction, 100..599), `duration_ms` (a number >= 0) and a non-empty `route`
    or else `path` (which stands for its route with its query cut, each segment holding a
    digit as `{id}` and at most 3 segments). Buckets by the log's own `timestamp`.

    `totals` of the range; `routes`: the `limit` (service, route, method) with most requests,
    each with every bucket of the range (zeros included, latencies null when empty);
    `slowest` (by p95) and `failing` (by (4xx + 5xx) / count) among routes with at least
    `min_count` requests; `users`: most requests first, with the last one's timestamp.

    Counts and averages are exact; percentiles come from a fixed latency histogram, within
    9.1% (`accuracy` says how). Filters: service, route, method and the range only; any
    other is 422. The same buckets, zones, `compare` and caching as /v1/analytics/volume,
    but the default bucket follows the range (hour up to 14 days, day up to 366, week
    beyond); at most API_MAX_BUCKETS (route, bucket) pairs (else 422 naming `limit`)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    series = SeriesRequest(
        LogQuery(service=params.service, since=params.since, until=params.until),
        params.bucket or default_bucket(params.since, params.until, now),
        params.tz,
        params.compare == "previous",
    )
    ask = RequestsRequest(
        series, params.route, params.method, params.limit, params.users, params.min_count
    )
    figures = request_figures(reader, ask, settings.api_max_buckets, now)
    return await cached_answer(figures, params.until, now, request)
