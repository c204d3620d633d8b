"""`lms patterns`: the most frequent message templates, as GET /v1/analytics/patterns."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from lms.cli.options import Commands, add_command, positive_int
from lms.cli.query import age_ago, reader_for, timestamp_arg
from lms.domain.severity import SEVERITY_ORDER
from lms.query.errors import DatabaseUnavailable, QueryError
from lms.query.patterns import DEFAULT_PATTERNS, TREND_BUCKETS, PatternCount, PatternsQuery
from lms.settings import Settings


def add_commands(commands: Commands) -> None:
    patterns = add_command(
        commands,
        "patterns",
        run_patterns,
        help="print the most frequent message patterns",
        description="Print the most frequent templates of the stored payloads (numbers, ids, "
        "addresses, quoted values, timestamps... masked as <*>), with exact counts, most "
        "frequent first. `lms logs --pattern ID` lists a pattern's logs. Logs stored before "
        "schema version 9 have no pattern.",
    )
    patterns.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_PATTERNS,
        metavar="K",
        help=f"the K most frequent (default {DEFAULT_PATTERNS}, at most 100)",
    )
    when = patterns.add_mutually_exclusive_group()
    when.add_argument(
        "--since", dest="since", type=age_ago, metavar="AGE", help="only the last AGE: 1h, 2d"
    )
    when.add_argument(
        "--from", dest="since", type=timestamp_arg, metavar="T", help="T <= timestamp"
    )
    patterns.add_argument(
        "--to", dest="until", type=timestamp_arg, metavar="T", help="timestamp < T"
    )
    patterns.add_argument("--service", help="exact service name")
    patterns.add_argument(
        "--severity",
        dest="severities",
        action="append",
        choices=list(SEVERITY_ORDER),
        help="severity; repeat for several (any matches)",
    )
    patterns.add_argument(
        "--bucket", choices=TREND_BUCKETS, default="hour", help="trend bucket (with --json)"
    )
    patterns.add_argument(
        "--json", action="store_true", help="the API's JSON, with examples and trends"
    )


def run_patterns(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 2 for a query the arguments cannot make, 1 for the database."""
    try:
        query = PatternsQuery(
            since=args.since,
            until=args.until,
            service=args.service,
            severities=tuple(args.severities or ()),
            bucket=args.bucket,
            limit=args.limit,
        )
        found = asyncio.run(_patterns(settings, query))
    except QueryError as exc:
        print(f"lms patterns: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"lms patterns: {exc.explained}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"patterns": [p.as_json() for p in found]}, ensure_ascii=False))
    else:
        print(f"{'COUNT':>10}  {'PATTERN':16}  TEMPLATE")
        for p in found:
            print(f"{p.count:>10}  {p.as_json()['pattern_id']}  {p.template}")
    return 0


async def _patterns(settings: Settings, query: PatternsQuery) -> list[PatternCount]:
    async with reader_for(settings) as reader:
        return await reader.patterns(query)
