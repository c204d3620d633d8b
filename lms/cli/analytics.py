"""`lms volume` and `lms errors`: the figures of GET /v1/analytics/volume and /errors, with
the filters of `lms logs`, as a table or as the API's JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from lms.cli.options import Commands, add_command, positive_int
from lms.cli.query import add_filter_arguments, reader_for
from lms.domain.severity import SEVERITY_ORDER
from lms.query.errors import DatabaseUnavailable, QueryError
from lms.query.filters import LogQuery
from lms.query.reader import LogReader
from lms.query.timebuckets import UNITS
from lms.query.volume import DEFAULT_TOP, SeriesRequest, error_rates, volume
from lms.settings import Settings

Series = Callable[[LogReader, SeriesRequest, int], Awaitable[dict[str, Any]]]


def add_commands(commands: Commands) -> None:
    for name, handler, help_text, description in (
        (
            "volume",
            run_volume,
            "print log counts per time bucket and severity",
            "Print the logs per time bucket (by their own timestamp) and severity, every"
            " bucket of the range, empty ones as zeros (GET /v1/analytics/volume).",
        ),
        (
            "errors",
            run_errors,
            "print error rates per service",
            "Print, per service, its logs, its errors (error + fatal) and their ratio in the"
            " range, most errors first; --json adds each time bucket (GET /v1/analytics/errors).",
        ),
    ):
        parser = add_command(commands, name, handler, help=help_text, description=description)
        add_filter_arguments(parser)
        parser.add_argument(
            "--bucket", choices=list(UNITS), default="hour", help="bucket size (default hour)"
        )
        parser.add_argument(
            "--tz", default="UTC", help="IANA time zone of day/week boundaries (default UTC)"
        )
        parser.add_argument(
            "--compare",
            action="store_true",
            help="also the as many buckets just before (the previous period)",
        )
        parser.add_argument("--json", action="store_true", help="the API's JSON answer")
        if name == "errors":
            parser.add_argument(
                "--top",
                type=positive_int,
                default=DEFAULT_TOP,
                metavar="N",
                help="services shown, most errors first; the rest are summed"
                f" (default {DEFAULT_TOP})",
            )


def run_volume(args: argparse.Namespace, settings: Settings) -> int:
    return _run("volume", volume, _volume_table, args, settings)


def run_errors(args: argparse.Namespace, settings: Settings) -> int:
    return _run("errors", error_rates, _errors_table, args, settings)


def _run(
    name: str,
    series: Series,
    table: Callable[[dict[str, Any]], str],
    args: argparse.Namespace,
    settings: Settings,
) -> int:
    """Exit 2 for a question the arguments cannot make, 1 for the database (as `lms logs`)."""
    try:
        request = SeriesRequest(
            LogQuery.from_input(vars(args)),
            args.bucket,
            args.tz,
            args.compare,
            getattr(args, "top", DEFAULT_TOP),
        )
        answer = asyncio.run(_ask(series, request, settings))
    except QueryError as exc:
        print(f"lms {name}: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"lms {name}: {exc.explained}", file=sys.stderr)
        return 1
    print(json.dumps(answer, ensure_ascii=False) if args.json else table(answer))
    return 0


async def _ask(series: Series, request: SeriesRequest, settings: Settings) -> dict[str, Any]:
    async with reader_for(settings) as reader:
        return await series(reader, request, settings.api_max_buckets)


def _change(now: int, before: int) -> str:
    return f"{(now - before) / before:+.0%}" if before else "new" if now else "-"


def _volume_table(answer: dict[str, Any]) -> str:
    previous = answer.get("previous")
    head = f"{'START':<26}{'TOTAL':>9}" + "".join(f"{s.upper():>9}" for s in SEVERITY_ORDER)
    lines = [head + (f"{'BEFORE':>9}{'CHANGE':>8}" if previous else "")]
    for i, bucket in enumerate(answer["buckets"]):
        line = f"{bucket['start']:<26}{bucket['total']:>9}" + "".join(
            f"{bucket['counts'][s]:>9}" for s in SEVERITY_ORDER
        )
        if previous and i < len(previous["buckets"]):
            before = previous["buckets"][i]["total"]
            line += f"{before:>9}{_change(bucket['total'], before):>8}"
        lines.append(line)
    lines.append(f"{'total':<26}{answer['total']:>9}")
    return "\n".join(lines)


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2%}"


def _errors_table(answer: dict[str, Any]) -> str:
    before = {s["service"]: s for s in answer.get("previous", {}).get("services", [])}
    lines = [f"{'SERVICE':<32}{'ERRORS':>9}{'TOTAL':>10}{'RATE':>9}"]
    if "previous" in answer:
        lines[0] += f"{'BEFORE':>9}{'CHANGE':>8}"
    for service in answer["services"]:
        line = (
            f"{service['service']:<32}{service['errors']:>9}{service['total']:>10}"
            f"{_rate(service['rate']):>9}"
        )
        if "previous" in answer:
            earlier = before.get(service["service"], {}).get("errors", 0)
            line += f"{earlier:>9}{_change(service['errors'], earlier):>8}"
        lines.append(line)
    other = answer["other"]
    if other["services"]:
        lines.append(
            f"{'(' + str(other['services']) + ' more)':<32}{other['errors']:>9}"
            f"{other['total']:>10}{_rate(other['rate']):>9}"
        )
    return "\n".join(lines)
