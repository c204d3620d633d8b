"""`lms mon`: the ingest daemon, with the exit statuses operators and supervisors rely on."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Coroutine
from typing import Any

import structlog

from lms.cli.options import Commands, add_command, positive_float
from lms.ingest.supervisor import Supervisor
from lms.settings import Settings
from lms.store.errors import StorageError

log = structlog.get_logger(__name__)

DRAIN_IDLE = 5.0
"""`--drain` without a value: longer than a pull's own timeout (3 s), so one empty pull
does not end a drain while messages are still on their way."""
EXIT_ABANDONED = 3
"""`lms mon` stopped at SHUTDOWN_TIMEOUT with work unacked (redelivered later, nothing lost)."""


def add_commands(commands: Commands) -> None:
    mon = add_command(
        commands,
        "mon",
        run_mon,
        help="run the monitor daemon",
        description="Subscribe to PUBSUB_TOPIC and write logs to MySQL in batches of BATCHSIZE "
        "or every FLUSHINTERVAL seconds. Applies pending migrations first (an up-to-date "
        "schema is only read, so a MySQL user without DDL rights will do). Stops cleanly on "
        "SIGTERM/SIGINT or after DURATION seconds (flushing and acking what it holds); a "
        "second signal exits at once (unacked messages are redelivered, nothing is lost). "
        "Exit status: 0 stopped cleanly, 1 failed, 2 bad configuration, 3 stopped at "
        "SHUTDOWN_TIMEOUT with work left unacked.",
    )
    mon.add_argument(
        "--no-create",
        action="store_true",
        help="do not create the topic and subscription if they are missing",
    )
    mon.add_argument(
        "--drain",
        nargs="?",
        const=DRAIN_IDLE,
        type=positive_float,
        metavar="SECONDS",
        help="stop by itself once nothing has arrived for SECONDS (default"
        f" {DRAIN_IDLE:g}) and nothing is held: drain a backlog, then exit",
    )


def run_mon(args: argparse.Namespace, settings: Settings) -> int:
    supervisor = Supervisor(settings, create=not args.no_create, drain_idle=args.drain)

    async def run() -> None:
        stop = asyncio.Event()
        _install_signal_handlers(stop)
        await supervisor.run(stop)

    status = _run(run())
    if status == 0 and supervisor.abandoned is not None:
        return EXIT_ABANDONED
    return status


def _run(coro: Coroutine[Any, Any, None]) -> int:
    try:
        asyncio.run(coro)
    except StorageError as exc:
        # One line: a database error that a retry cannot fix (e.g. access denied).
        log.error(
            "lms mon stopped: database error; unacked messages will be redelivered", error=str(exc)
        )
        return 1
    except Exception as exc:
        log.exception("lms mon failed; unacked messages will be redelivered", error=repr(exc))
        return 1
    return 0


def _install_signal_handlers(stop: asyncio.Event) -> None:
    """First SIGTERM/SIGINT: graceful stop. Second: exit at once, leaving the rest unacked."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now; unacked messages will be redelivered")
            os._exit(128 + signum)
        log.info("signal received: shutting down", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
