"""Checks for `make run`: did this run's published logs all land in MySQL?

    python scripts/run_check.py reset
        drop MYSQL_DATABASE (`make run` sets it to its own database, `lms_run`)
    python scripts/run_check.py verify REPORT [--timeout SECONDS]
        wait until service_logs and service_severity hold exactly the totals of
        `lms sim --report REPORT`, then print them side by side; exit 1 if they do not agree
        within the timeout

`make run` starts a new emulator each time, whose message ids start again from 1, and LMS
stores each message id once: so each run needs a fresh database. Connection settings are those
of `lms` (MYSQL_* variables, `.env`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import pymysql

from lms.settings import load_settings

Key = tuple[str, str]


def connect(database: bool = True) -> pymysql.connections.Connection:
    s = load_settings()
    return pymysql.connect(
        host=s.mysql_host,
        port=s.mysql_port,
        user=s.mysql_user,
        password=s.mysql_password,
        database=s.mysql_database if database else None,
        autocommit=True,
        connect_timeout=10,
    )


def counts() -> tuple[Counter[Key], Counter[Key]]:
    """COUNT(*) of service_logs and SUM(count) of service_severity per (service, severity)."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT service_name, severity, COUNT(*) FROM service_logs"
                " GROUP BY service_name, severity"
            )
            logs = Counter({(a, b): int(n) for a, b, n in cur.fetchall()})
            cur.execute(
                "SELECT service_name, severity, SUM(`count`) FROM service_severity"
                " GROUP BY service_name, severity"
            )
            sums = Counter({(a, b): int(n) for a, b, n in cur.fetchall()})
    finally:
        conn.close()
    return logs, sums


def reset() -> int:
    name = load_settings().mysql_database
    conn = connect(database=False)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()
    print(f"run_check: database {name} dropped, starting afresh")
    return 0


def verify(report_path: Path, timeout: float) -> int:
    report = json.loads(report_path.read_text(encoding="utf-8"))
    published: Counter[Key] = Counter(
        {(row["service"], row["severity"]): int(row["count"]) for row in report["totals"]}
    )
    deadline = time.monotonic() + timeout
    while True:
        logs, sums = counts()
        keys = sorted(k for k in set(published) | set(logs) | set(sums) if published[k] or logs[k])
        agree = all(published[k] == logs[k] == sums[k] for k in keys)
        if agree or time.monotonic() >= deadline:
            break
        time.sleep(1)
    print(f"\n{'service':<16} {'severity':<8} {'published':>10} {'stored':>10} {'SUM(count)':>10}")
    for key in keys:
        mark = "" if published[key] == logs[key] == sums[key] else "   <-- mismatch"
        print(
            f"{key[0]:<16} {key[1]:<8} {published[key]:>10} {logs[key]:>10} {sums[key]:>10}{mark}"
        )
    total = sum(published.values())
    print(
        f"{'total':<25} {total:>10} {sum(logs[k] for k in keys):>10} "
        f"{sum(sums[k] for k in keys):>10}"
    )
    if agree:
        print(f"\nrun_check: OK, all {total} published logs stored once and counted once")
        return 0
    print(f"\nrun_check: MISMATCH after {timeout:g}s (see the table above)", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
