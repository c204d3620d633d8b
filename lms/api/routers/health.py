"""GET /healthz (liveness) and /readyz (what the parts that are on depend on answers)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from lms.api.schemas import NoParams, Problem, Status
from lms.ingest.http.publisher import LogPublisher
from lms.query.reader import LogReader

router = APIRouter()


@router.get("/healthz", response_model=Status, summary="Liveness")
async def healthz(_params: Annotated[NoParams, Query()]) -> dict[str, str]:
    """200 while the API process serves requests; never needs the token."""
    return {"status": "ok"}


_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": Problem,
        "description": "the database (query API) or Pub/Sub (ingestion) cannot be reached,"
        " or the topic is missing",
    }
}


@router.get("/readyz", response_model=Status, summary="Readiness", responses=_NOT_READY)
async def readyz(_params: Annotated[NoParams, Query()], request: Request) -> dict[str, str]:
    """200 when every part that is on can do its work: the database answers (API_QUERY) and
    Pub/Sub has the topic (API_INGEST); 503 naming the first that cannot."""
    reader: LogReader | None = request.app.state.reader
    if reader is not None:
        await reader.ping()
    publisher: LogPublisher | None = request.app.state.publisher
    if publisher is not None:
        await publisher.ping()
    return {"status": "ready"}
