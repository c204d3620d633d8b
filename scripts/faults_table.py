"""Print the results table of docs/reliability.md from the fault suite's summary file.

    python scripts/faults_table.py [FILE]

tests/test_faults.py merges one summary per scenario and variant into the file $FAULTS_REPORT
names; `make faults` sets it to .run/faults.json and passes it here. FILE defaults to
$FAULTS_REPORT, else .run/faults.json. Two tables: the Pub/Sub scenarios (messages published),
then those of HTTP ingestion (requests and logs the clients sent, logs answered 2xx).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

COLUMNS = [
    ("published", "published"),
    ("stored", "stored"),
    ("rejected", "rejected"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("redeliveries_ignored", "redeliveries ignored"),
    ("seconds", "seconds"),
]
HTTP_COLUMNS = [
    ("requests", "requests sent"),
    ("published", "logs sent"),
    ("accepted", "accepted (2xx)"),
    ("stored", "stored"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("redeliveries_ignored", "retries ignored"),
    ("seconds", "seconds"),
]
"""The HTTP ingestion scenarios (their summaries have `accepted`): the clients' view."""


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else os.environ.get("FAULTS_REPORT", ".run/faults.json"))
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"{path}: no summary yet; run `make faults` or the fault tests", file=sys.stderr)
        return 1
    pubsub = [run for run in runs.values() if "accepted" not in run]
    http = [run for run in runs.values() if "accepted" in run]
    _table(pubsub, COLUMNS)
    if http:
        print()
        _table(http, HTTP_COLUMNS)
    return 0


def _table(runs: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    head = ["scenario", "variant", *(title for _key, title in columns), "run at"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def order(run: dict[str, Any]) -> tuple[int, str, str, str]:
        settings = json.dumps(run.get("suite_settings", {}), sort_keys=True)
        number = run["scenario"].split()[0].rstrip("abcdefghijklmnopqrstuvwxyz")
        return int(number) if number.isdigit() else 0, run["scenario"], run["variant"], settings

    for run in sorted(runs, key=order):
        extra = sorted(run.get("suite_settings", {}).items())
        variant = " ".join([run["variant"], *(f"{k}={v}" for k, v in extra)])
        cells = [run["scenario"], variant, *(str(run.get(k, "")) for k, _t in columns)]
        cells.append(run.get("finished_at", ""))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
