"""`lms api` under uvicorn, stopped by SIGTERM/SIGINT with exit status 0, like `lms mon`."""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn

from lms.api.app import create_app
from lms.api.auth import check_exposure
from lms.settings import Settings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve the API until SIGTERM/SIGINT, then return (a requested stop is a clean exit).

    Raises SettingsError, before listening, when ingestion would be open to the network.

    While it serves, uvicorn handles the signals itself (graceful shutdown, a second SIGINT
    forces it). On the way out it restores the Python handlers it found and re-raises the
    signal it caught, so that a process left with the default handler dies by it (exit -15).
    The handlers installed here before `run()` are the ones it finds and restores, so that
    re-raise lands in `stop`: the stop is done already, and `lms api` returns to exit 0. A
    signal before uvicorn has taken over asks it to stop as soon as it starts.
    """
    settings = settings.model_copy(
        update={"api_host": host or settings.api_host, "api_port": port or settings.api_port}
    )
    check_exposure(settings)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level,
        server_header=False,
    )
    server = uvicorn.Server(config)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        server.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
