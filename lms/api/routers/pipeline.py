"""GET /v1/pipeline: `lms mon`'s state, from its metrics (lms.ops.pipeline_state), for the web
UI's Health page. Always 200: an unreachable `lms mon` is a state ("down"), not an error."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from lms.api.dependencies import AppSettings
from lms.api.render import json_answer
from lms.api.schemas import NoParams, PipelineOut
from lms.ops.pipeline_state import pipeline_state

router = APIRouter()


@router.get("/pipeline", response_model=PipelineOut, summary="The ingestion pipeline's state")
async def pipeline(_params: Annotated[NoParams, Query()], settings: AppSettings) -> Response:
    """What `lms mon` reports on its metrics at MON_METRICS_URL, read within
    MON_METRICS_TIMEOUT: `ok`, `down` (unreachable, not its metrics, or stalled: messages
    held and no commit for 5 x FLUSHINTERVAL) or `unknown` (MON_METRICS_URL unset), with
    the reason in `detail`. With several `lms mon` replicas, point it at one of them (or at
    a proxy of one): each reports only its own batches."""
    answer = await pipeline_state(settings.mon_metrics_url, settings.mon_metrics_timeout)
    response = await json_answer(lambda: answer)
    response.headers["Cache-Control"] = "no-store"
    return response
