"""`lms api` under uvicorn, stopped by SIGTERM/SIGINT with exit status 0, like `lms mon`.

With API_WORKERS > 1 uvicorn starts that many worker processes on one socket; each builds its
own app from the environment (`app_from_environment`, an import string is the only way to hand
an app to a worker), so each has its own publisher and pool. Their metrics meet in a directory
of prometheus_client's multiprocess mode (`metrics_directory`), so any worker's /metrics
reports them all.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from lms.api.app import create_app
from lms.api.auth import check_exposure
from lms.api.protocol import LmsConfig
from lms.settings import Settings, load_settings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
GC_YOUNG_THRESHOLD = 10_000
"""Allocations of the youngest generation before a collection (Python's default: 700)."""


def tune_gc() -> None:
    """Make the cycle collector cheap for a server whose requests hold thousands of objects.

    An NDJSON body of 1,000 logs keeps a few objects per log alive until it is answered, so
    at Python's defaults (a young collection every 700 allocations) every request survives
    several collections, reaches the oldest generation and makes it collect the whole heap,
    the ~100,000 objects of the imported modules included: under the ingestion benchmark's
    bulk load, a third of the CPU of `lms api` went to the collector. Here the objects alive
    once the app is built (modules, the app: they live as long as the process) are frozen
    out of collection, and young collections wait for GC_YOUNG_THRESHOLD allocations. Only
    cyclic garbage waits on the collector; everything else is still freed by its last
    reference, so memory stays as flat as before (the benchmark reports the peak RSS).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve the API until SIGTERM/SIGINT, then return (a requested stop is a clean exit).

    Raises SettingsError, before listening, when ingestion would be open to the network.

    While it serves, uvicorn handles the signals itself (graceful shutdown, a second SIGINT
    forces it). On the way out it restores the Python handlers it found and re-raises the
    signal it caught, so that a process left with the default handler dies by it (exit -15).
    The handlers installed here before `run()` are the ones it finds and restores, so that
    re-raise lands in `stop`: the stop is done already, and `lms api` returns to exit 0. A
    signal before uvicorn has taken over asks it to stop as soon as it starts. With workers,
    uvicorn's supervisor queues the signals itself, stops every worker and returns.
    """
    settings = settings.model_copy(
        update={"api_host": host or settings.api_host, "api_port": port or settings.api_port}
    )
    check_exposure(settings)
    workers = settings.api_workers
    if workers > 1:
        # Each worker builds its app from the environment: it must see the --host and
        # --port of this command too (the Host check depends on the address).
        os.environ["API_HOST"] = settings.api_host
        os.environ["API_PORT"] = str(settings.api_port)
    config = LmsConfig(
        f"{__name__}:{app_from_environment.__name__}" if workers > 1 else create_app(settings),
        factory=workers > 1,
        workers=workers,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level,
        server_header=False,
        # Slow or idle clients cannot hold connections: headers, idle keep-alive and the
        # number served at once are bounded here, an ingestion body where it is read.
        header_timeout=settings.api_header_timeout,
        timeout_keep_alive=settings.api_keepalive_timeout,
        limit_concurrency=settings.api_limit_concurrency,
    )
    server = uvicorn.Server(config)
    if workers == 1:
        tune_gc()  # a worker process does it in app_from_environment

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        if workers > 1:
            with metrics_directory():
                Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_directory() -> Iterator[None]:
    """A fresh, empty directory for the workers' metric files, removed afterwards; workers
    are spawned, so they import prometheus_client anew and see it. One an operator set is
    used as it is (it must be emptied between runs, as prometheus_client documents)."""
    if os.environ.get(MULTIPROC_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="lms-api-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(path, ignore_errors=True)


def app_from_environment() -> FastAPI:
    """The app of one worker process, configured like its parent: from the environment."""
    app = create_app(load_settings())
    tune_gc()
    return app
