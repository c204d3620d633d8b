"""How `lms logs` and `lms stats` print results: aligned tables for people, JSON for tools.

The JSON is each result's `as_json`, the shape the HTTP API answers with too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from lms.domain.severity import SEVERITY_ORDER
from lms.domain.timefmt import rfc3339
from lms.query.results import LogEntry, ServiceCounts

LOG_HEADER = f"{'TIMESTAMP (UTC)':<27}  {'LEVEL':<5}  {'SERVICE':<20}  PAYLOAD"


def log_json(entry: LogEntry) -> str:
    """One JSON line; non-ASCII stays readable."""
    return json.dumps(entry.as_json(), ensure_ascii=False)


def log_line(entry: LogEntry) -> str:
    """One table row under LOG_HEADER: line breaks in the payload are escaped so that a row
    stays one line, and the tracing context present follows in brackets."""
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


def services_json(services: Sequence[ServiceCounts]) -> str:
    """The body GET /v1/services answers, indented."""
    return json.dumps({"services": [s.as_json() for s in services]}, indent=2, ensure_ascii=False)


def services_table(services: Sequence[ServiceCounts]) -> str:
    """A row per service, a column per severity, and a last row `(all)` of the totals."""
    width = max([len("SERVICE"), *(len(s.service_name) for s in services)])
    header = "  ".join(f"{name.upper():>9}" for name in (*SEVERITY_ORDER, "total"))
    lines = [f"{'SERVICE':<{width}}  {header}"]
    totals = dict.fromkeys(SEVERITY_ORDER, 0)
    for s in services:
        cells = "  ".join(f"{s.counts[v]:>9}" for v in SEVERITY_ORDER)
        lines.append(f"{s.service_name:<{width}}  {cells}  {s.total:>9}")
        for v in SEVERITY_ORDER:
            totals[v] += s.counts[v]
    cells = "  ".join(f"{totals[v]:>9}" for v in SEVERITY_ORDER)
    lines.append(f"{'(all)':<{width}}  {cells}  {sum(totals.values()):>9}")
    return "\n".join(lines)
