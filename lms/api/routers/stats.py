"""The counters: GET /v1/services, /v1/severity and /v1/consistency."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from lms.api.dependencies import Reader
from lms.api.schemas import ConsistencyOut, NoParams, ServicesOut, SeverityOut, SeverityParams
from lms.domain.timefmt import rfc3339
from lms.query.buckets import bucket_range

router = APIRouter()


@router.get("/services", response_model=ServicesOut, summary="Services and their counts")
async def services(_params: Annotated[NoParams, Query()], reader: Reader) -> dict[str, Any]:
    """Every service with its total log count per severity (from service_severity)."""
    return {"services": [s.as_json() for s in await reader.services()]}


@router.get("/severity", response_model=SeverityOut, summary="Counts over time")
async def severity(params: Annotated[SeverityParams, Query()], reader: Reader) -> dict[str, Any]:
    """Logs stored per (service, severity) in each time bucket of [from, to).

    Buckets are by the time their batch was committed (service_severity.created_at,
    UTC); buckets without logs are left out. At most 10,000 buckets per request.
    """
    since, until = bucket_range(params.bucket, params.since, params.until)
    rows = await reader.severity_buckets(params.bucket, since, until, params.service)
    return {
        "bucket": params.bucket,
        "from": rfc3339(since),
        "to": rfc3339(until),
        "buckets": [b.as_json() for b in rows],
    }


@router.get("/consistency", response_model=ConsistencyOut, summary="Counter consistency")
async def consistency(_params: Annotated[NoParams, Query()], reader: Reader) -> dict[str, Any]:
    """Per (service, severity): COUNT(*) of service_logs against SUM(count) of
    service_severity, read in one snapshot; `consistent` is true when all agree."""
    result = await reader.consistency()
    return {"consistent": result.consistent, "pairs": [r.as_json() for r in result.rows]}
