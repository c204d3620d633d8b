"""GET /v1/analytics/volume and /v1/analytics/errors: counts over time by the logs' own
timestamp (lms.query.volume), unlike /v1/severity, which buckets by batch commit time.
Closed ranges can be cached (lms.api.routers.analytics.caching).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from lms.api.dependencies import AppSettings, Reader
from lms.api.routers.analytics.caching import CACHING, cached_answer
from lms.api.schemas import AnalyticsParams, ErrorsOut, ErrorsParams, VolumeOut
from lms.query.filters import LogQuery
from lms.query.reader import LogReader
from lms.query.volume import DEFAULT_TOP, SeriesRequest, error_rates, volume

router = APIRouter()

Series = Callable[[LogReader, SeriesRequest, int, datetime], Awaitable[dict[str, Any]]]


@router.get("/volume", response_model=VolumeOut, responses=CACHING, summary="Log volume over time")
async def volume_series(
    params: Annotated[AnalyticsParams, Query()],
    request: Request,
    reader: Reader,
    settings: AppSettings,
) -> Response:
    """Logs per time bucket and severity, by the log's own `timestamp`, for any filter of
    GET /v1/logs. Every bucket of [from, to) is present (zeros included), at most
    API_MAX_BUCKETS of them (else 422, too_many_buckets). Exact: each count is COUNT(*) of
    service_logs with the same filters. `q` is exact too, at the cost of a full-text search
    (the `Server-Timing` header gives the database time)."""
    return await _answer(volume, params, request, reader, settings.api_max_buckets)


@router.get("/errors", response_model=ErrorsOut, responses=CACHING, summary="Error rate over time")
async def error_series(
    params: Annotated[ErrorsParams, Query()],
    request: Request,
    reader: Reader,
    settings: AppSettings,
) -> Response:
    """Services ranked by errors (error + fatal) in the range, with their logs and error
    ratio; the `top` ones also per time bucket, the rest summed in `other`. The same
    filters, buckets and caching as /v1/analytics/volume; at most API_MAX_BUCKETS
    (service, bucket) pairs (else 422 naming `top`)."""
    return await _answer(error_rates, params, request, reader, settings.api_max_buckets)


async def _answer(
    series: Series, params: AnalyticsParams, request: Request, reader: LogReader, cap: int
) -> Response:
    now = datetime.now(UTC).replace(tzinfo=None)
    values = dict(params)
    ask = SeriesRequest(
        LogQuery.from_input(values),
        params.bucket,
        params.tz,
        params.compare == "previous",
        values.get("top", DEFAULT_TOP),
    )
    return await cached_answer(series(reader, ask, cap, now), params.until, now, request)
