"""`lms pub` and `lms sim`: test traffic onto the topic, with the confirmed totals."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import structlog

from lms.cli.options import Commands, add_command, positive_int
from lms.devtools.traffic import Tally, publish_n, simulate
from lms.settings import Settings

log = structlog.get_logger(__name__)


def add_commands(commands: Commands) -> None:
    pub = add_command(
        commands,
        "pub",
        run_pub,
        help="publish N random valid test logs",
        description="Publish N valid test logs (random services and severities), wait for "
        "every publish to be confirmed and print the count per (service, severity).",
    )
    pub.add_argument("count", type=positive_int, metavar="N", help="number of messages")
    pub.add_argument("--seed", type=int, help="random seed, for repeatable messages")
    pub.add_argument("--report", type=Path, metavar="FILE", help="also write totals as JSON")

    sim = add_command(
        commands,
        "sim",
        run_sim,
        help="simulate services publishing logs",
        description="Simulate SIM_SERVICES services, each publishing random logs at random "
        "intervals (SIM_RATE messages/s on average) for DURATION seconds (default 60), then "
        "print the confirmed totals per (service, severity).",
    )
    sim.add_argument("--report", type=Path, metavar="FILE", help="also write totals as JSON")
    sim.add_argument("--seed", type=int, help="random seed, for repeatable traffic")


def run_pub(args: argparse.Namespace, settings: Settings) -> int:
    return _report(asyncio.run(publish_n(settings, args.count, args.seed)), args.report)


def run_sim(args: argparse.Namespace, settings: Settings) -> int:
    duration = settings.duration or 60.0
    log.info(
        "simulating", services=settings.sim_services, rate=settings.sim_rate, duration=duration
    )
    return _report(asyncio.run(simulate(settings, duration, args.seed)), args.report)


def _report(tally: Tally, path: Path | None) -> int:
    print(tally.table())
    if path is not None:
        path.write_text(json.dumps(tally.as_report(), indent=2) + "\n", encoding="utf-8")
    return 0
