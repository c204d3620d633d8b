"""How `lms logs` and `lms stats` print results: aligned tables for people, JSON for tools.

The JSON is each result's `as_json`, the shape the HTTP API answers with too.

Stored text (payloads above all, and names stored before lms.domain.identifiers refused
control characters) is printed with its control characters escaped, in tables and in JSON
alike: a log must never reach the terminal as an escape sequence (colours, cursor moves, a
rewritten title, an OSC 52 clipboard write...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from lms.domain.identifiers import printable
from lms.domain.severity import SEVERITY_ORDER
from lms.domain.timefmt import rfc3339
from lms.query.results import LogEntry, ServiceCounts

LOG_HEADER = f"{'TIMESTAMP (UTC)':<27}  {'LEVEL':<5}  {'SERVICE':<20}  PAYLOAD"


_JSON_UNESCAPED = re.compile("[\x7f-\x9f]")
"""The control characters json.dumps leaves raw with ensure_ascii=False: DEL and C1 (whose
0x9b is an 8-bit CSI)."""


def json_text(value: Any, indent: int | None = None) -> str:
    """JSON with non-ASCII readable and no raw control character: json escapes C0 itself,
    DEL and C1 are written as \\u escapes (the same string to any JSON reader)."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _JSON_UNESCAPED.sub(lambda match: f"\\u{ord(match[0]):04x}", text)


def log_json(entry: LogEntry) -> str:
    """One JSON line; non-ASCII stays readable."""
    return json_text(entry.as_json())


def log_line(entry: LogEntry) -> str:
    """One table row under LOG_HEADER: control characters (line breaks too) are escaped so
    that a row stays one line, and the tracing context present follows in brackets."""
    context = " ".join(
        f"{name}={printable(value)}"
        for name, value in (
            ("resource", entry.resource_id),
            ("trace", entry.trace_id),
            ("span", entry.span_id),
            ("commit", entry.commit),
        )
        if value is not None
    )
    line = (
        f"{rfc3339(entry.timestamp):<27}  {entry.severity.upper():<5}"
        f"  {printable(entry.service_name):<20}  {printable(entry.payload)}"
    )
    return f"{line}  [{context}]" if context else line


def services_json(services: Sequence[ServiceCounts]) -> str:
    """The body GET /v1/services answers, indented."""
    return json_text({"services": [s.as_json() for s in services]}, indent=2)


def services_table(services: Sequence[ServiceCounts]) -> str:
    """A row per service, a column per severity, and a last row `(all)` of the totals."""
    names = [printable(s.service_name) for s in services]
    width = max([len("SERVICE"), *(len(name) for name in names)])
    header = "  ".join(f"{name.upper():>9}" for name in (*SEVERITY_ORDER, "total"))
    lines = [f"{'SERVICE':<{width}}  {header}"]
    totals = dict.fromkeys(SEVERITY_ORDER, 0)
    for name, s in zip(names, services, strict=True):
        cells = "  ".join(f"{s.counts[v]:>9}" for v in SEVERITY_ORDER)
        lines.append(f"{name:<{width}}  {cells}  {s.total:>9}")
        for v in SEVERITY_ORDER:
            totals[v] += s.counts[v]
    cells = "  ".join(f"{totals[v]:>9}" for v in SEVERITY_ORDER)
    lines.append(f"{'(all)':<{width}}  {cells}  {sum(totals.values()):>9}")
    return "\n".join(lines)
