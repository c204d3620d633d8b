"""GET /v1/analytics/patterns: the most frequent message templates, exactly counted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from lms.api.dependencies import AppSettings, Reader
from lms.api.render import json_answer
from lms.api.schemas import PatternsOut, PatternsParams
from lms.query.patterns import PatternsQuery

router = APIRouter()


@router.get("/patterns", response_model=PatternsOut, summary="Top message patterns")
async def patterns(
    params: Annotated[PatternsParams, Query()], reader: Reader, settings: AppSettings
) -> Response:
    """The `limit` most frequent templates (payloads with numbers, ids, addresses, quoted
    values, timestamps... masked as `<*>`) among the logs in [from, to) of `service` and
    `severity`, most frequent first.

    Counts are exact for any range: whole UTC days come from a daily rollup, the other whole
    hours from an hourly one, partial hours at the edges from the logs themselves. Each
    pattern has its newest matching log as `example` and a `trend` over every `bucket` of the
    range (zeros included; an open end stops at the last bucket with logs). Pass
    `pattern_id` as `pattern` to GET /v1/logs for its logs. Logs stored before schema
    version 9 have no pattern. 422 when the trends would hold more than API_MAX_BUCKETS
    counts.
    """
    query = PatternsQuery(
        since=params.since,
        until=params.until,
        service=params.service,
        severities=tuple(params.severities),
        bucket=params.bucket,
        limit=params.limit,
    )
    found = await reader.patterns(query, max_buckets=settings.api_max_buckets)
    return await json_answer(lambda: {"patterns": [p.as_json() for p in found]})
