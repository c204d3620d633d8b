"""GET /healthz (liveness) and /readyz (the database answers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from lms.api.dependencies import Reader
from lms.api.schemas import ERRORS, NoParams, Status

router = APIRouter()


@router.get("/healthz", response_model=Status, summary="Liveness")
async def healthz(_params: Annotated[NoParams, Query()]) -> dict[str, str]:
    """200 while the API process serves requests; never needs the token."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Status, summary="Readiness", responses=ERRORS)
async def readyz(_params: Annotated[NoParams, Query()], reader: Reader) -> dict[str, str]:
    """200 when the database answers, 503 otherwise."""
    await reader.ping()
    return {"status": "ready"}
