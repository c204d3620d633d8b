"""What the routers get from the app, through FastAPI dependencies rather than closures, so a
router module needs no app to be built and a test can hand the app its own reader."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lms.query.reader import LogReader


def get_reader(request: Request) -> LogReader:
    reader: LogReader = request.app.state.reader
    return reader


Reader = Annotated[LogReader, Depends(get_reader)]
"""The app's one LogReader (`app.state.reader`), whose pool every request shares."""
