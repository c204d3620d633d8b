"""`lms`: the command line. It only parses arguments and wires the modules together."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from lms import __version__
from lms.devtools.traffic import publish_n, simulate
from lms.domain.severity import SEVERITY_ORDER
from lms.domain.timefmt import parse_timestamp, rfc3339
from lms.ingest.supervisor import Supervisor
from lms.ops.log_setup import configure_logging
from lms.query.cursor import Cursor
from lms.query.errors import DatabaseUnavailable, QueryError
from lms.query.filters import DEFAULT_LIMIT, MAX_LIMIT, LogQuery
from lms.query.reader import LogReader
from lms.query.results import LogEntry, ServiceCounts
from lms.settings import Settings, SettingsError, load_settings
from lms.store.errors import StorageError
from lms.store.migrations import Migrator

log = structlog.get_logger(__name__)

SETTINGS_HELP = "Configuration comes from environment variables (and a .env file); see README."


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"lms: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.pubsub_emulator_host:
        os.environ["PUBSUB_EMULATOR_HOST"] = settings.pubsub_emulator_host
    return int(args.handler(args, settings) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lms",
        description="LMS, the Log Monitoring Server: collects structured logs from a Pub/Sub "
        "topic into MySQL, in batches, acking each message only after its batch is committed.",
        epilog=SETTINGS_HELP,
    )
    parser.add_argument("--version", action="version", version=f"lms {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    mon = commands.add_parser(
        "mon",
        help="run the monitor daemon",
        description="Subscribe to PUBSUB_TOPIC and write logs to MySQL in batches of BATCHSIZE "
        "or every FLUSHINTERVAL seconds. Applies the schema first. Stops cleanly on "
        "SIGTERM/SIGINT or after DURATION seconds (flushing and acking what it holds); a "
        "second signal exits at once (unacked messages are redelivered, nothing is lost).",
        epilog=SETTINGS_HELP,
    )
    mon.add_argument(
        "--no-create",
        action="store_true",
        help="do not create the topic and subscription if they are missing",
    )
    mon.set_defaults(handler=_mon)

    pub = commands.add_parser(
        "pub",
        help="publish N random valid test logs",
        description="Publish N valid test logs (random services and severities), wait for "
        "every publish to be confirmed and print the count per (service, severity).",
        epilog=SETTINGS_HELP,
    )
    pub.add_argument("count", type=_positive_int, metavar="N", help="number of messages")
    pub.add_argument("--seed", type=int, help="random seed, for repeatable messages")
    pub.add_argument("--report", type=Path, metavar="FILE", help="also write totals as JSON")
    pub.set_defaults(handler=_pub)

    sim = commands.add_parser(
        "sim",
        help="simulate services publishing logs",
        description="Simulate SIM_SERVICES services, each publishing random logs at random "
        "intervals (SIM_RATE messages/s on average) for DURATION seconds (default 60), then "
        "print the confirmed totals per (service, severity).",
        epilog=SETTINGS_HELP,
    )
    sim.add_argument("--report", type=Path, metavar="FILE", help="also write totals as JSON")
    sim.add_argument("--seed", type=int, help="random seed, for repeatable traffic")
    sim.set_defaults(handler=_sim)

    migrate = commands.add_parser(
        "migrate",
        help="apply the database schema",
        description="Create MYSQL_DATABASE if missing and apply the migrations shipped in "
        "the package (lms/store/sql/) that are not applied yet. Safe to run any number of "
        "times.",
        epilog=SETTINGS_HELP,
    )
    migrate.set_defaults(handler=_migrate)
    _add_query_commands(commands)
    return parser


def _add_query_commands(commands: Any) -> None:
    """`lms api`, `lms logs` and `lms stats`: the read side, all over lms.query."""
    api = commands.add_parser(
        "api",
        help="serve the HTTP query API",
        description="Serve the query API (GET /v1/logs, /v1/services, /v1/severity, "
        "/v1/consistency; OpenAPI at /openapi.json) on API_HOST:API_PORT until SIGINT/SIGTERM. "
        "With API_TOKEN set, every endpoint but /healthz needs 'Authorization: Bearer "
        "<API_TOKEN>'. Read-only: a MySQL user with only SELECT on MYSQL_DATABASE is enough.",
        epilog=SETTINGS_HELP,
    )
    api.add_argument("--host", help="listen address (default API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=_positive_int, help="listen port (default API_PORT, 3000)")
    api.set_defaults(handler=_api)

    logs = commands.add_parser(
        "logs",
        help="search stored logs",
        description="Print stored logs matching every given filter, newest first, as a table "
        "or as JSON lines. Time bounds are RFC 3339 (e.g. 2024-05-01T12:00:00Z): --from is "
        "inclusive, --to exclusive.",
        epilog=SETTINGS_HELP,
    )
    logs.add_argument("--service", help="exact service name")
    logs.add_argument(
        "--severity",
        action="append",
        choices=list(SEVERITY_ORDER),
        help="severity; repeat for several (any matches)",
    )
    when = logs.add_mutually_exclusive_group()
    when.add_argument(
        "--since", type=_duration, metavar="AGE", help="only the last AGE: 30s, 15m, 1h, 2d, 1w"
    )
    when.add_argument("--from", dest="from_", type=_timestamp, metavar="T", help="T <= timestamp")
    logs.add_argument("--to", type=_timestamp, metavar="T", help="timestamp < T")
    logs.add_argument("--resource-id", help="exact resource_id")
    logs.add_argument("--trace-id", help="exact trace_id")
    logs.add_argument("--span-id", help="exact span_id")
    logs.add_argument("--commit", help="exact commit")
    logs.add_argument("--parent-resource-id", help="exact metadata.parentResourceId")
    logs.add_argument(
        "-q",
        "--query",
        dest="q",
        metavar="TEXT",
        help='full-text search of the payload: every word must occur, "quoted words" as a phrase',
    )
    logs.add_argument(
        "--limit",
        type=_positive_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help="at most N logs (default 100; more are read in pages of 1000)",
    )
    logs.add_argument("--cursor", help="continue after a previous page (printed at its end)")
    logs.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    logs.set_defaults(handler=_logs)

    stats = commands.add_parser(
        "stats",
        help="print log counts per service and severity",
        description="Print, per service, the number of stored logs per severity "
        "(from service_severity).",
        epilog=SETTINGS_HELP,
    )
    stats.add_argument("--json", action="store_true", help="JSON instead of a table")
    stats.set_defaults(handler=_stats)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


EXIT_ABANDONED = 3
"""`lms mon` stopped at SHUTDOWN_TIMEOUT with work unacked (redelivered later, nothing lost)."""


def _mon(args: argparse.Namespace, settings: Settings) -> int:
    supervisor = Supervisor(settings, create=not args.no_create)

    async def run() -> None:
        stop = asyncio.Event()
        _install_signal_handlers(stop)
        await supervisor.run(stop)

    status = _run(run())
    if status == 0 and supervisor.abandoned is not None:
        return EXIT_ABANDONED
    return status


def _pub(args: argparse.Namespace, settings: Settings) -> int:
    tally = asyncio.run(publish_n(settings, args.count, args.seed))
    print(tally.table())
    _write_report(args.report, tally.as_report())
    return 0


def _sim(args: argparse.Namespace, settings: Settings) -> int:
    duration = settings.duration or 60.0
    log.info(
        "simulating", services=settings.sim_services, rate=settings.sim_rate, duration=duration
    )
    tally = asyncio.run(simulate(settings, duration, args.seed))
    print(tally.table())
    _write_report(args.report, tally.as_report())
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    try:
        applied = asyncio.run(Migrator(settings).migrate())
    except StorageError as exc:
        print(f"lms migrate: {exc}", file=sys.stderr)
        return 1
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from lms.api.server import serve  # FastAPI loads only for `lms api`

    serve(settings, args.host, args.port)
    return 0


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 30s, 15m, 1h, 2d or 1w")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    return timedelta(**{unit[match.group(2)]: float(match.group(1))})


def _timestamp(text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _logs(args: argparse.Namespace, settings: Settings) -> int:
    since = args.from_
    if args.since is not None:
        since = datetime.now(UTC).replace(tzinfo=None) - args.since

    async def run() -> str | None:
        remaining = args.limit
        cursor = Cursor.decode(args.cursor) if args.cursor else None
        async with LogReader(settings, pool_size=1, timeout=settings.api_query_timeout) as reader:
            while True:
                query = LogQuery(
                    service=args.service,
                    severities=tuple(args.severity or ()),
                    since=since,
                    until=args.to,
                    resource_id=args.resource_id,
                    trace_id=args.trace_id,
                    span_id=args.span_id,
                    commit=args.commit,
                    parent_resource_id=args.parent_resource_id,
                    q=args.q,
                    limit=min(remaining, MAX_LIMIT),
                    cursor=cursor,
                )
                page = await reader.logs(query)
                for entry in page.logs:
                    if args.json:
                        print(json.dumps(entry.as_json(), ensure_ascii=False))
                    else:
                        print(_log_line(entry))
                remaining -= len(page.logs)
                if page.next_cursor is None or remaining <= 0:
                    return page.next_cursor
                cursor = Cursor.decode(page.next_cursor)

    if not args.json:
        print(f"{'TIMESTAMP (UTC)':<27}  {'LEVEL':<5}  {'SERVICE':<20}  PAYLOAD")
    try:
        next_cursor = asyncio.run(run())
    except QueryError as exc:
        print(f"lms logs: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"lms logs: {exc}", file=sys.stderr)
        return 1
    if next_cursor is not None:
        print(f"more logs: add --cursor {next_cursor}", file=sys.stderr)
    return 0


def _log_line(entry: LogEntry) -> str:
    context = " ".join(
        f"{name}={value}"
        for name, value in (
            ("resource", entry.resource_id),
            ("trace", entry.trace_id),
            ("span", entry.span_id),
            ("commit", entry.commit),
        )
        if value is not None
    )
    payload = entry.payload.replace("\r", "\\r").replace("\n", "\\n")
    line = (
        f"{rfc3339(entry.timestamp):<27}  {entry.severity.upper():<5}"
        f"  {entry.service_name:<20}  {payload}"
    )
    return f"{line}  [{context}]" if context else line


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> list[ServiceCounts]:
        async with LogReader(settings, pool_size=1, timeout=settings.api_query_timeout) as reader:
            return await reader.services()

    try:
        services = asyncio.run(run())
    except DatabaseUnavailable as exc:
        print(f"lms stats: {exc}", file=sys.stderr)
        return 1
    if args.json:
        report = [
            {"service_name": s.service_name, "total": s.total, "severity": s.counts}
            for s in services
        ]
        print(json.dumps({"services": report}, indent=2, ensure_ascii=False))
        return 0
    width = max([len("SERVICE"), *(len(s.service_name) for s in services)])
    header = "  ".join(f"{name.upper():>9}" for name in (*SEVERITY_ORDER, "total"))
    print(f"{'SERVICE':<{width}}  {header}")
    totals = dict.fromkeys(SEVERITY_ORDER, 0)
    for s in services:
        cells = "  ".join(f"{s.counts[v]:>9}" for v in SEVERITY_ORDER)
        print(f"{s.service_name:<{width}}  {cells}  {s.total:>9}")
        for v in SEVERITY_ORDER:
            totals[v] += s.counts[v]
    cells = "  ".join(f"{totals[v]:>9}" for v in SEVERITY_ORDER)
    print(f"{'(all)':<{width}}  {cells}  {sum(totals.values()):>9}")
    return 0


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


def _write_report(path: Path | None, report: dict[str, object]) -> None:
    if path is not None:
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
