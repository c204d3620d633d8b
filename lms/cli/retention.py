"""`lms retention`: one pass of compaction and expiry, for a daily cron job or CronJob.

A command of its own rather than a task of `lms mon`: deleting needs DELETE and UPDATE, which
`lms mon`'s least-privilege user must not have (deploy/mysql/lms-users.sh gives them to the
`lms_retention` user only), and a pass that runs once a day needs no daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from lms.cli.options import Commands, add_command
from lms.settings import Settings
from lms.store.errors import StorageError
from lms.store.retention import Report, Retention


def add_commands(commands: Commands) -> None:
    add_command(
        commands,
        "retention",
        run_retention,
        help="expire old logs and compact old rollup rows (run it daily)",
        description="One pass, then exit. Compaction: the rollup rows (service_severity, "
        "volume_rollup) of UTC days at least COMPACT_AFTER_DAYS before today "
        "are merged into one row per key and hour (service_severity: per key and day of "
        "commit): no total and no analytics answer changes (only the minute and hour buckets "
        "of /v1/severity over those days show each day's count at its 00:00). Expiry, when "
        "RETENTION_DAYS is "
        "set: logs whose timestamp is before midnight UTC RETENTION_DAYS days ago are deleted, "
        "with the rollup rows of those days and the rejected messages received before then; "
        "their counts leave service_severity in the same transactions, so totals stay equal "
        "to the rows kept. Every step is a transaction of at most RETENTION_CHUNK rows, safe "
        "beside a running `lms mon` and against a crash at any point (run it again). The "
        "database user needs SELECT, INSERT, UPDATE and DELETE (lms_retention in "
        "deploy/mysql/lms-users.sh). Exit 0 done, 1 a database error (one line), 2 bad "
        "settings.",
    )


def run_retention(_args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> Report:
        async with Retention(settings) as retention:
            return await retention.run()

    try:
        report = asyncio.run(run())
    except StorageError as exc:
        print(f"lms retention: {exc}", file=sys.stderr)
        return 1
    kept = "everything" if settings.retention_days is None else f"{settings.retention_days} days"
    print(f"retention: keeping {kept}; {report.chunks} transactions")
    for table, rows in sorted(report.deleted.items()):
        print(f"  {table}: {rows} rows deleted")
    for table, rows in sorted(report.merged.items()):
        print(f"  {table}: {rows} rows merged away")
    return 0
