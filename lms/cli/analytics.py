"""`lms volume`, `lms errors` and `lms requests`: the figures of GET /v1/analytics/volume,
/errors and /requests, with the filters of `lms logs` (the rollup's keys for requests), as a
table or as the API's JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from lms.cli.options import Commands, add_command, positive_int
from lms.cli.query import add_filter_arguments, add_range_arguments, reader_for
from lms.domain.severity import SEVERITY_ORDER
from lms.query.errors import DatabaseUnavailable, QueryError
from lms.query.filters import LogQuery
from lms.query.reader import LogReader
from lms.query.requests import (
    DEFAULT_ROUTES,
    DEFAULT_USERS,
    MIN_COUNT,
    RequestsRequest,
    default_bucket,
    request_figures,
)
from lms.query.timebuckets import UNITS, BucketSize
from lms.query.volume import DEFAULT_TOP, SeriesRequest, error_rates, volume
from lms.settings import Settings

Figures = Callable[[LogReader, int], Awaitable[dict[str, Any]]]
"""An analytics question, asked of a reader with the bucket cap."""


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
        _series_arguments(parser)
        if name == "errors":
            parser.add_argument(
                "--top",
                type=positive_int,
                default=DEFAULT_TOP,
                metavar="N",
                help="services shown, most errors first; the rest are summed"
                f" (default {DEFAULT_TOP})",
            )
    parser = add_command(
        commands,
        "requests",
        run_requests,
        help="print HTTP request counts, failure rates and latency per route",
        description="Print the request logs of lms_client's middleware (metadata.http) per"
        " route: requests, 4xx and 5xx rates, average and p50/p95/p99 latency (percentiles"
        " within 9.1%%), most requests first, then the slowest and most failing routes and"
        " the top users; --json adds each time bucket (GET /v1/analytics/requests).",
    )
    parser.add_argument("--service", help="exact service name")
    add_range_arguments(parser)
    parser.add_argument("--route", help="exact route template (/users/{id})")
    parser.add_argument("--method", help="exact HTTP method")
    _series_arguments(parser, None, "hour up to 14 days, day up to 366, week beyond, as the API's")
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_ROUTES,
        metavar="N",
        help=f"routes shown in each list (default {DEFAULT_ROUTES})",
    )
    parser.add_argument(
        "--users",
        type=positive_int,
        default=DEFAULT_USERS,
        metavar="N",
        help=f"users shown, most requests first (default {DEFAULT_USERS})",
    )
    parser.add_argument(
        "--min-count",
        type=positive_int,
        default=MIN_COUNT,
        metavar="N",
        help="requests a route needs to be ranked among the slowest and most failing"
        f" (default {MIN_COUNT})",
    )


def _series_arguments(
    parser: argparse.ArgumentParser, bucket: str | None = "hour", default: str = "hour"
) -> None:
    parser.add_argument(
        "--bucket", choices=list(UNITS), default=bucket, help=f"bucket size (default {default})"
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


def _series(
    args: argparse.Namespace, query: LogQuery, bucket: BucketSize | None = None
) -> SeriesRequest:
    return SeriesRequest(
        query, bucket or args.bucket, args.tz, args.compare, getattr(args, "top", DEFAULT_TOP)
    )


def run_volume(args: argparse.Namespace, settings: Settings) -> int:
    return _run("volume", _volume_table, args, settings, lambda: _asking(volume, args))


def run_errors(args: argparse.Namespace, settings: Settings) -> int:
    return _run("errors", _errors_table, args, settings, lambda: _asking(error_rates, args))


def run_requests(args: argparse.Namespace, settings: Settings) -> int:
    def ask() -> Figures:
        query = LogQuery(service=args.service, since=args.since, until=args.until)
        bucket = args.bucket or default_bucket(args.since, args.until)
        request = RequestsRequest(
            _series(args, query, bucket),
            args.route,
            args.method,
            args.limit,
            args.users,
            args.min_count,
        )
        return lambda reader, cap: request_figures(reader, request, cap)

    return _run("requests", _requests_table, args, settings, ask)


def _asking(
    series: Callable[[LogReader, SeriesRequest, int], Awaitable[dict[str, Any]]],
    args: argparse.Namespace,
) -> Figures:
    request = _series(args, LogQuery.from_input(vars(args)))
    return lambda reader, cap: series(reader, request, cap)


def _run(
    name: str,
    table: Callable[[dict[str, Any]], str],
    args: argparse.Namespace,
    settings: Settings,
    question: Callable[[], Figures],
) -> int:
    """Exit 2 for a question the arguments cannot make, 1 for the database (as `lms logs`)."""
    try:
        answer = asyncio.run(_ask(question(), settings))
    except QueryError as exc:
        print(f"lms {name}: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"lms {name}: {exc.explained}", file=sys.stderr)
        return 1
    print(json.dumps(answer, ensure_ascii=False) if args.json else table(answer))
    return 0


async def _ask(figures: Figures, settings: Settings) -> dict[str, Any]:
    async with reader_for(settings) as reader:
        return await figures(reader, settings.api_max_buckets)


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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _route_line(route: dict[str, Any]) -> str:
    name = f"{route['method']} {route['route']}".strip()
    return (
        f"{route['service'][:16]:<17}{name[:40]:<41}{route['count']:>9}"
        f"{_rate(route['rate_4xx']):>8}{_rate(route['rate_5xx']):>8}{_ms(route['avg_ms']):>9}"
        f"{_ms(route['p50_ms']):>9}{_ms(route['p95_ms']):>9}{_ms(route['p99_ms']):>9}"
    )


def _requests_table(answer: dict[str, Any]) -> str:
    head = (
        f"{'SERVICE':<17}{'ROUTE':<41}{'COUNT':>9}{'4XX':>8}{'5XX':>8}{'AVG_MS':>9}"
        f"{'P50_MS':>9}{'P95_MS':>9}{'P99_MS':>9}"
    )
    totals = {"service": "(all)", "method": "", "route": "", **answer["totals"]}
    lines = [head, *(_route_line(r) for r in answer["routes"]), _route_line(totals)]
    if "previous" in answer:
        before = {"service": "(before)", "method": "", "route": "", **answer["previous"]["totals"]}
        lines.append(_route_line(before))
    for title, key in (("slowest (p95)", "slowest"), ("most failing", "failing")):
        if answer[key]:
            lines += ["", title, *(_route_line(r) for r in answer[key])]
    if answer["users"]:
        lines += ["", f"{'USER':<40}{'COUNT':>9}  LAST SEEN"]
        lines += [
            f"{u['user_id'][:39]:<40}{u['count']:>9}  {u['last_seen']}" for u in answer["users"]
        ]
    lines += ["", answer["accuracy"]]
    return "\n".join(lines)
