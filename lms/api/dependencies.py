"""What the routers get from the app, through FastAPI dependencies rather than closures, so a
router module needs no app to be built and a test can hand the app its own reader.

They are `async def` although they only read `app.state`: FastAPI runs a plain `def`
dependency in its thread pool, a thread hand-off per dependency per request, which cost
single-log ingestion about a tenth of its event loop's time (bench/ingest.py, py-spy).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lms.ingest.http.publisher import LogPublisher
from lms.query.reader import LogReader
from lms.settings import Settings


async def get_reader(request: Request) -> LogReader:
    reader: LogReader = request.app.state.reader
    return reader


async def get_publisher(request: Request) -> LogPublisher:
    publisher: LogPublisher = request.app.state.publisher
    return publisher


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Reader = Annotated[LogReader, Depends(get_reader)]
"""The app's one LogReader (`app.state.reader`), whose pool every request shares."""
Publisher = Annotated[LogPublisher, Depends(get_publisher)]
"""The app's one LogPublisher (`app.state.publisher`, made by the lifespan when API_INGEST
is on), whose batches every request shares."""
AppSettings = Annotated[Settings, Depends(get_settings)]
"""The settings the app was made with (`app.state.settings`), e.g. ingestion's limits."""
