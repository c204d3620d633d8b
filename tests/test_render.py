"""How `lms logs` and `lms stats` print stored text: no control character reaches the
terminal raw, in tables or JSON (issue 14), and JSON still reads back as what was stored."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lms.cli.render import json_text, log_json, log_line, services_json, services_table
from lms.devtools.verify import Consistency
from lms.domain.identifiers import printable
from lms.domain.severity import SEVERITY_ORDER
from lms.query.results import LogEntry, ServiceCounts

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x9b1mC1\x7f\x00\r\n\tend"
"""A window title (OSC), a screen clear, colours, an 8-bit CSI, DEL, NUL and line breaks."""


BASE = LogEntry(
    id=1,
    message_id="m1",
    service_name="checkout",
    severity="error",
    timestamp=datetime(2026, 12, 1, 8, 0, 0),
    payload="card declined",
    resource_id=None,
    trace_id=None,
    span_id=None,
    commit=None,
    metadata=None,
)


def entry(**changes: Any) -> LogEntry:
    return dataclasses.replace(BASE, **changes)


def raw_controls(text: str) -> list[str]:
    """The control characters in `text`, bar the newlines that separate lines of output."""
    return [c for c in text if not c.isprintable() and c != "\n"]


def test_printable_escapes_every_control_character_and_keeps_the_rest() -> None:
    assert printable(ESCAPES) == (
        "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\x9b1mC1\\x7f\\x00\\r\\n\\tend"
    )
    assert printable("é ü 日本 \U0001f600 plain") == "é ü 日本 \U0001f600 plain"


@given(st.text())
def test_printable_never_leaves_a_control_character(text: str) -> None:
    assert not any(0x00 <= ord(c) <= 0x1F or 0x7F <= ord(c) <= 0x9F for c in printable(text))


@pytest.mark.parametrize(
    "field", ["payload", "service_name", "resource_id", "trace_id", "span_id", "commit"]
)
def test_a_table_row_escapes_stored_text(field: str) -> None:
    line = log_line(entry(**{field: ESCAPES}))
    assert raw_controls(line) == []
    assert "\n" not in line
    assert "\\x1b[31mred" in line


def test_json_lines_escape_c1_and_del_too_and_read_back_unchanged() -> None:
    stored = entry(payload=ESCAPES, service_name="svc\x9b", metadata={"k": "\x1b\x85"})
    line = log_json(stored)
    assert raw_controls(line) == []
    assert "\n" not in line
    back = json.loads(line)
    assert (back["payload"], back["service_name"]) == (ESCAPES, "svc\x9b")
    assert back["metadata"] == {"k": "\x1b\x85"}
    assert "é" in json_text({"p": "é"})  # non-ASCII stays readable


def test_stats_escape_service_names_in_the_table_and_in_json() -> None:
    services = [
        ServiceCounts("ok", dict.fromkeys(SEVERITY_ORDER, 1)),
        ServiceCounts("bad\x1b[2J\x9b", dict.fromkeys(SEVERITY_ORDER, 2)),
    ]
    table = services_table(services)
    assert raw_controls(table) == []
    rows = table.splitlines()
    assert rows[2].startswith("bad\\x1b[2J\\x9b  ")
    assert len({len(row) for row in rows}) == 1  # still aligned, escapes counted as shown
    as_json = services_json(services)
    assert raw_controls(as_json) == []
    assert json.loads(as_json)["services"][1]["service_name"] == "bad\x1b[2J\x9b"


def test_the_consistency_table_of_make_run_escapes_service_names() -> None:
    key = ("svc\x1b[2J", "info")
    table = Consistency({key: 1}, {key: 1}, {key: 1}, {}, 0).table()
    assert raw_controls(table) == []
    assert "svc\\x1b[2J" in table
