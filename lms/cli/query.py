"""`lms api`, `lms logs` and `lms stats`: the read side, all over lms.query.

`lms logs` names its arguments (their `dest`) after LogQuery's fields, so that
`LogQuery.from_input` builds the query from them as it does from the API's parameters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lms.cli.options import Commands, add_command, positive_int
from lms.cli.render import LOG_HEADER, log_json, log_line, services_json, services_table
from lms.domain.severity import SEVERITY_ORDER
from lms.domain.timefmt import parse_timestamp
from lms.query.cursor import Cursor
from lms.query.errors import DatabaseUnavailable, QueryError
from lms.query.export import MEDIA_TYPES, open_export
from lms.query.filters import DEFAULT_LIMIT, MAX_LIMIT, LogQuery
from lms.query.reader import LogReader
from lms.query.results import LogEntry, ServiceCounts
from lms.settings import Settings, SettingsError


def add_commands(commands: Commands) -> None:
    api = add_command(
        commands,
        "api",
        run_api,
        help="serve the HTTP query API, HTTP ingestion and the web UI",
        description="Serve the query API (GET /v1/logs, /v1/logs/{id}, /v1/services, /v1/severity, "
        "/v1/consistency, /v1/users/{user_id}/requests, /v1/analytics/patterns, "
        "/v1/analytics/volume, /v1/analytics/errors; OpenAPI at /openapi.json) and HTTP "
        "ingestion (POST /v1/logs, /otlp/v1/logs, /loki/api/v1/push, /_bulk; published to "
        "PUBSUB_TOPIC) and the web UI (http://API_HOST:API_PORT/ in a browser, /ui/; "
        "docs/ui.md) on API_HOST:API_PORT until SIGINT/SIGTERM; API_QUERY, API_INGEST and "
        "API_UI turn each off, "
        "API_WORKERS forks worker processes. Ingestion needs one of INGEST_TOKENS when set "
        "(Bearer, or the password of HTTP Basic); with API_TOKEN set, every other endpoint "
        "but /healthz and the UI's page and assets needs 'Authorization: Bearer "
        "<API_TOKEN>'. On a loopback address, a "
        "Host header outside API_ALLOWED_HOSTS is refused; on any other address, ingestion "
        "without INGEST_TOKENS is refused (exit 2) unless INGEST_ALLOW_ANONYMOUS=true. The "
        "query API only reads: a MySQL user with only SELECT on MYSQL_DATABASE is enough. "
        "Slow clients are cut off: API_HEADER_TIMEOUT, API_KEEPALIVE_TIMEOUT, "
        "INGEST_BODY_TIMEOUT and API_LIMIT_CONCURRENCY bound them; aggregates answer at most "
        "API_MAX_BUCKETS counts.",
    )
    api.add_argument("--host", help="listen address (default API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=positive_int, help="listen port (default API_PORT, 3000)")

    logs = add_command(
        commands,
        "logs",
        run_logs,
        help="search stored logs",
        description="Print stored logs matching every given filter, newest first, as a table "
        "or as JSON lines. Time bounds are RFC 3339 (e.g. 2024-05-01T12:00:00Z): --from is "
        "inclusive, --to exclusive.",
    )
    add_filter_arguments(logs)
    logs.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="at most N logs (default 100; more are read in pages of 1000)",
    )
    logs.add_argument("--cursor", help="continue after a previous page (printed at its end)")
    output = logs.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    output.add_argument(
        "--export",
        choices=list(MEDIA_TYPES),
        help="every matching log (no --limit), streamed to stdout as NDJSON or CSV, the"
        " format of GET /v1/logs/export; exit 1 if the database fails midway (the output is"
        " then incomplete)",
    )

    stats = add_command(
        commands,
        "stats",
        run_stats,
        help="print log counts per service and severity",
        description="Print, per service, the number of stored logs per severity "
        "(from service_severity).",
    )
    stats.add_argument("--json", action="store_true", help="JSON instead of a table")


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The filters of `lms logs` (and of GET /v1/logs), named by LogQuery's fields; the
    analytics commands take them too."""
    parser.add_argument("--service", help="exact service name")
    parser.add_argument(
        "--severity",
        dest="severities",
        action="append",
        choices=list(SEVERITY_ORDER),
        help="severity; repeat for several (any matches)",
    )
    add_range_arguments(parser)
    parser.add_argument("--resource-id", help="exact resource_id")
    parser.add_argument("--trace-id", help="exact trace_id")
    parser.add_argument("--span-id", help="exact span_id")
    parser.add_argument("--commit", help="exact commit")
    parser.add_argument("--parent-resource-id", help="exact metadata.parentResourceId")
    parser.add_argument(
        "--user-id", help='exact metadata.user_id (an integer as its digits: 42 finds 42 and "42")'
    )
    parser.add_argument(
        "-q",
        "--query",
        dest="q",
        metavar="TEXT",
        help='full-text search of the payload: every word must occur, "quoted words" as a phrase',
    )
    parser.add_argument(
        "--pattern",
        dest="pattern_id",
        type=_pattern,
        metavar="ID",
        help="the logs of one pattern (its 16 hex digits, from `lms patterns`)",
    )


def add_range_arguments(parser: argparse.ArgumentParser) -> None:
    """The time range: --since AGE or --from T, and --to T."""
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--since",
        dest="since",
        type=age_ago,
        metavar="AGE",
        help="only the last AGE: 30s, 15m, 1h, 2d, 1w",
    )
    when.add_argument(
        "--from", dest="since", type=timestamp_arg, metavar="T", help="T <= timestamp"
    )
    parser.add_argument("--to", dest="until", type=timestamp_arg, metavar="T", help="timestamp < T")


def age_ago(text: str) -> datetime:
    """The moment AGE (30s, 15m, 1h, 2d, 1w) before now, naive UTC like every query bound."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 30s, 15m, 1h, 2d or 1w")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    age = timedelta(**{unit[match.group(2)]: float(match.group(1))})
    return datetime.now(UTC).replace(tzinfo=None) - age


def timestamp_arg(text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _pattern(text: str) -> int:
    if len(text) != 16 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a pattern id (16 hex digits)")
    return int(text, 16)


def reader_for(settings: Settings) -> LogReader:
    """One connection: a command runs one query at a time."""
    return LogReader(settings, pool_size=1, timeout=settings.api_query_timeout)


def run_api(args: argparse.Namespace, settings: Settings) -> int:
    from lms.api.server import serve  # FastAPI and uvicorn load only for `lms api`

    try:
        serve(settings, args.host, args.port)
    except SettingsError as exc:
        print(f"lms api: {exc}", file=sys.stderr)
        return 2
    return 0


def run_logs(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 2 for a query the arguments cannot make (like argparse), 1 for the database."""
    if args.export is not None:
        return _run_export(args, settings)
    if args.limit is None:
        args.limit = DEFAULT_LIMIT
    if not args.json:
        print(LOG_HEADER)
    try:
        next_cursor = asyncio.run(_print_logs(args, settings, log_json if args.json else log_line))
    except QueryError as exc:
        print(f"lms logs: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"lms logs: {exc.explained}", file=sys.stderr)
        return 1
    if next_cursor is not None:
        print(f"more logs: add --cursor {next_cursor}", file=sys.stderr)
    return 0


async def _print_logs(
    args: argparse.Namespace, settings: Settings, render: Callable[[LogEntry], str]
) -> str | None:
    """Prints `--limit` logs, read in pages of at most MAX_LIMIT, and returns the cursor of
    what is left (None: nothing)."""
    remaining: int = args.limit
    query = LogQuery.from_input({**vars(args), "limit": min(remaining, MAX_LIMIT)})
    async with reader_for(settings) as reader:
        while True:
            page = await reader.logs(query)
            for entry in page.logs:
                print(render(entry))
            remaining -= len(page.logs)
            if page.next_cursor is None or remaining <= 0:
                return page.next_cursor
            cursor = Cursor.decode(page.next_cursor)
            query = replace(query, limit=min(remaining, MAX_LIMIT), cursor=cursor)


def _run_export(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit is not None or args.cursor is not None:
        print(
            "lms logs: --export writes every matching log: no --limit, no --cursor", file=sys.stderr
        )
        return 2
    try:
        asyncio.run(_export(args, settings))
    except QueryError as exc:
        print(f"lms logs: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"lms logs: export incomplete: {exc.explained}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        # What Python's docs advise: stdout to /dev/null, so the flush at exit cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


async def _export(args: argparse.Namespace, settings: Settings) -> None:
    """Writes the export to stdout page by page, the same bytes as GET /v1/logs/export
    (CSV's CRLF line ends kept, whatever the platform)."""
    query = LogQuery.from_input({**vars(args), "limit": MAX_LIMIT, "cursor": None})
    out = sys.stdout.buffer
    async with reader_for(settings) as reader:
        async for chunk in await open_export(reader, query, args.export):
            out.write(chunk.encode("utf-8"))
    out.flush()


def run_stats(args: argparse.Namespace, settings: Settings) -> int:
    try:
        services = asyncio.run(_services(settings))
    except DatabaseUnavailable as exc:
        print(f"lms stats: {exc.explained}", file=sys.stderr)
        return 1
    print(services_json(services) if args.json else services_table(services))
    return 0


async def _services(settings: Settings) -> list[ServiceCounts]:
    async with reader_for(settings) as reader:
        return await reader.services()
