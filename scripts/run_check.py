"""Checks for `make run`: did this run's published logs all land in MySQL?

    python scripts/run_check.py reset
        drop MYSQL_DATABASE (`make run` sets it to its own database, `lms_run`)
    python scripts/run_check.py verify REPORT [--timeout SECONDS]
        wait until service_logs and service_severity hold exactly the totals of
        `lms sim --report REPORT`, then print them side by side; exit 1 if they do not agree
        within the timeout

`make run` starts a new emulator each time, whose message ids start again from 1, and LMS
stores each message id once: so each run needs a fresh database. Connection settings are those
of `lms` (MYSQL_* variables, `.env`). The check itself is lms.devtools.verify's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from lms.devtools.database import drop_databases
from lms.devtools.verify import SimReport, wait_consistent
from lms.settings import load_settings


def reset() -> int:
    settings = load_settings()
    drop_databases(settings, [settings.mysql_database])
    print(f"run_check: database {settings.mysql_database} dropped, starting afresh")
    return 0


def verify(report_path: Path, timeout: float) -> int:
    try:
        report = SimReport.load(report_path)
    except ValueError as exc:
        print(f"run_check: {exc}", file=sys.stderr)
        return 1
    result = asyncio.run(wait_consistent(load_settings(), report.totals, timeout))
    print(f"\n{result.table()}")
    if result.ok:
        print(
            f"\nrun_check: OK, all {report.published} published logs stored once and counted once"
        )
        return 0
    print(f"\nrun_check: MISMATCH after {timeout:g}s (see the table above)", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("reset")
    check = commands.add_parser("verify")
    check.add_argument("report", type=Path)
    check.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    if args.command == "reset":
        return reset()
    return verify(args.report, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
