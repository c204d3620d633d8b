"""GET /metrics: lms.ops.api_metrics in the Prometheus text format, or OpenMetrics when the
scraper asks. Operational data, so under API_TOKEN like everything but /healthz (Prometheus
sends it with `authorization: {credentials: ...}` in its scrape config)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from lms.ops import api_metrics

router = APIRouter()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """The metrics of this `lms api` (all its workers, with API_WORKERS > 1)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(api_metrics.exposed()), media_type=content_type)
