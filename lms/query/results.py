"""What queries return: plain dataclasses, JSON-ready through `as_json`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lms.domain.timefmt import rfc3339


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: int
    message_id: str
    service_name: str
    severity: str
    timestamp: datetime
    payload: str
    resource_id: str | None
    trace_id: str | None
    span_id: str | None
    commit: str | None
    metadata: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, with RFC 3339 UTC timestamps."""
        return {
            "id": self.id,
            "message_id": self.message_id,
            "timestamp": rfc3339(self.timestamp),
            "service_name": self.service_name,
            "severity": self.severity,
            "payload": self.payload,
            "resource_id": self.resource_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "commit": self.commit,
            "metadata": self.metadata,
        }


@dataclass(slots=True)
class LogPage:
    logs: list[LogEntry]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ServiceCounts:
    service_name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class SeverityBucket:
    start: datetime
    service_name: str
    severity: str
    count: int


@dataclass(frozen=True, slots=True)
class ConsistencyRow:
    service_name: str
    severity: str
    logs: int
    severity_total: int

    @property
    def agree(self) -> bool:
        return self.logs == self.severity_total


@dataclass(slots=True)
class Consistency:
    rows: list[ConsistencyRow] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return all(row.agree for row in self.rows)


def entry_from_row(row: Sequence[Any]) -> LogEntry:
    metadata = row[10]
    if isinstance(metadata, bytes | str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            metadata = None
    return LogEntry(
        id=int(row[0]),
        message_id=row[1],
        service_name=row[2],
        severity=row[3],
        timestamp=row[4],
        payload=row[5],
        resource_id=row[6],
        trace_id=row[7],
        span_id=row[8],
        commit=row[9],
        metadata=metadata if isinstance(metadata, dict) else None,
    )
