"""The counters: GET /v1/services, /v1/severity and /v1/consistency.

Each answer holds at most API_MAX_BUCKETS counts (a larger one is a 422 naming the cap, as
Elasticsearch's max_buckets), and is encoded off the event loop (lms.api.render).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from lms.api.dependencies import AppSettings, Reader
from lms.api.render import json_answer
from lms.api.schemas import ConsistencyOut, NoParams, ServicesOut, SeverityOut, SeverityParams
from lms.domain.timefmt import rfc3339
from lms.query.buckets import bucket_range

router = APIRouter()


@router.get("/services", response_model=ServicesOut, summary="Services and their counts")
async def services(
    _params: Annotated[NoParams, Query()], reader: Reader, settings: AppSettings
) -> Response:
    """Every service with its total log count per severity (from service_severity).

    422 when more than API_MAX_BUCKETS (service, severity) pairs have logs."""
    rows = await reader.services(max_buckets=settings.api_max_buckets)
    return await json_answer(lambda: {"services": [s.as_json() for s in rows]})


@router.get("/severity", response_model=SeverityOut, summary="Counts over time")
async def severity(
    params: Annotated[SeverityParams, Query()], reader: Reader, settings: AppSettings
) -> Response:
    """Logs stored per (service, severity) in each time bucket of [from, to).

    Buckets are by the time their batch was committed (service_severity.created_at,
    UTC); buckets without logs are left out. Days compacted by `lms retention` hold one
    count per service and severity at their 00:00 UTC (day buckets are unchanged). At most
    10,000 time buckets in the range, and at most API_MAX_BUCKETS counts (default 10,000) in
    the answer: over either, 422.
    """
    since, until = bucket_range(params.bucket, params.since, params.until)
    rows = await reader.severity_buckets(
        params.bucket, since, until, params.service, max_buckets=settings.api_max_buckets
    )
    return await json_answer(
        lambda: {
            "bucket": params.bucket,
            "from": rfc3339(since),
            "to": rfc3339(until),
            "buckets": [b.as_json() for b in rows],
        }
    )


@router.get("/consistency", response_model=ConsistencyOut, summary="Counter consistency")
async def consistency(
    _params: Annotated[NoParams, Query()], reader: Reader, settings: AppSettings
) -> Response:
    """Per (service, severity): COUNT(*) of service_logs against SUM(count) of
    service_severity, read in one snapshot; `consistent` is true when all agree.

    422 when more than API_MAX_BUCKETS (service, severity) pairs have logs."""
    result = await reader.consistency(max_buckets=settings.api_max_buckets)
    return await json_answer(
        lambda: {"consistent": result.consistent, "pairs": [r.as_json() for r in result.rows]}
    )
