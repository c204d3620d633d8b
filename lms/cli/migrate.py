"""`lms migrate`: the schema, applied on its own (`lms mon` applies it too at start-up)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from lms.cli.options import Commands, add_command
from lms.settings import Settings
from lms.store.errors import StorageError
from lms.store.migrations import Migrator


def add_commands(commands: Commands) -> None:
    add_command(
        commands,
        "migrate",
        run_migrate,
        help="apply the database schema",
        description="Create MYSQL_DATABASE if missing and apply the migrations shipped in "
        "the package (lms/store/sql/) that are not applied yet. Safe to run any number of "
        "times.",
    )


def run_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    try:
        applied = asyncio.run(Migrator(settings).migrate())
    except StorageError as exc:
        print(f"lms migrate: {exc}", file=sys.stderr)
        return 1
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0
