"""GET /healthz (liveness) and /readyz (the database answers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from lms.api.schemas import ERRORS, NoParams, Status
from lms.query.reader import LogReader

router = APIRouter()


@router.get("/healthz", response_model=Status, summary="Liveness")
async def healthz(_params: Annotated[NoParams, Query()]) -> dict[str, str]:
    """200 while the API process serves requests; never needs the token."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Status, summary="Readiness", responses=ERRORS)
async def readyz(_params: Annotated[NoParams, Query()], request: Request) -> dict[str, str]:
    """200 when the database answers (with the query API on), 503 otherwise."""
    reader: LogReader | None = request.app.state.reader
    if reader is not None:
        await reader.ping()
    return {"status": "ready"}
