"""`lms`: the parser, assembled from one module per command group, and `main()`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lms import __version__
from lms.cli import analytics, migrate, mon, patterns, query, retention, traffic
from lms.cli.options import SETTINGS_HELP, Handler
from lms.ops.log_setup import configure_logging
from lms.settings import SettingsError, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 2 for bad arguments or settings (one line naming them), else the command's own."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"lms: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.pubsub_emulator_host:
        os.environ["PUBSUB_EMULATOR_HOST"] = settings.pubsub_emulator_host
    handler: Handler = args.handler
    return handler(args, settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lms",
        description="LMS, the Log Monitoring Server: collects structured logs from a Pub/Sub "
        "topic into MySQL, in batches, acking each message only after its batch is committed.",
        epilog=SETTINGS_HELP,
    )
    parser.add_argument("--version", action="version", version=f"lms {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    # The order `lms --help` lists them in.
    for group in (mon, traffic, migrate, retention, query, patterns, analytics):
        group.add_commands(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
