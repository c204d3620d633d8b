"""`lms pub` and `lms sim`: test traffic onto the topic, with the confirmed totals."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import structlog

from lms.cli.options import Commands, add_command, positive_int
from lms.devtools.http_traffic import HttpTarget
from lms.devtools.sender import Tally
from lms.devtools.traffic import publish_n, simulate
from lms.settings import Settings

log = structlog.get_logger(__name__)


def add_commands(commands: Commands) -> None:
    pub = add_command(
        commands,
        "pub",
        run_pub,
        help="publish N realistic valid test logs",
        description="Publish N valid, realistic test logs (access lines with the request "
        "convention, cache misses, retries, database and upstream errors...; README, "
        "Simulated traffic), wait for "
        "every publish to be confirmed and print the count per (service, severity).",
    )
    pub.add_argument("count", type=positive_int, metavar="N", help="number of messages")
    pub.add_argument("--seed", type=int, help="random seed, for repeatable messages")
    pub.add_argument("--report", type=Path, metavar="FILE", help="also write totals as JSON")
    _add_http_options(pub)

    sim = add_command(
        commands,
        "sim",
        run_sim,
        help="simulate services publishing logs",
        description="Simulate SIM_SERVICES services, each publishing realistic logs at random "
        "intervals (SIM_RATE messages/s on average; error share and rate drift, with "
        "occasional incidents) for DURATION seconds (default 60), then "
        "print the confirmed totals per (service, severity).",
    )
    sim.add_argument("--report", type=Path, metavar="FILE", help="also write totals as JSON")
    sim.add_argument("--seed", type=int, help="random seed, for repeatable traffic")
    _add_http_options(sim)


def _add_http_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--http",
        metavar="URL",
        help="send through lms api's POST /v1/logs at URL (e.g. http://127.0.0.1:3000) instead"
        " of publishing to Pub/Sub; each log carries an id and requests answered 429 or 5xx, or"
        " left unanswered, are retried, so a count is a log that lms api confirmed",
    )
    parser.add_argument(
        "--token",
        help="ingestion token for --http (default: the first of INGEST_TOKENS, if set)",
    )


def _target(args: argparse.Namespace, settings: Settings) -> HttpTarget | None:
    if args.http is None:
        return None
    target = HttpTarget.from_settings(args.http, settings)
    return HttpTarget(target.url, args.token) if args.token else target


def run_pub(args: argparse.Namespace, settings: Settings) -> int:
    tally = asyncio.run(publish_n(settings, args.count, args.seed, _target(args, settings)))
    return _report(tally, args.report)


def run_sim(args: argparse.Namespace, settings: Settings) -> int:
    duration = settings.duration or 60.0
    log.info(
        "simulating",
        services=settings.sim_services,
        rate=settings.sim_rate,
        duration=duration,
        via=args.http or "pubsub",
    )
    tally = asyncio.run(simulate(settings, duration, args.seed, _target(args, settings)))
    return _report(tally, args.report)


def _report(tally: Tally, path: Path | None) -> int:
    print(tally.table())
    if path is not None:
        path.write_text(json.dumps(tally.as_report(), indent=2) + "\n", encoding="utf-8")
    return 0
