"""What queries return: plain dataclasses, JSON-ready through `as_json`.

Each `as_json` is typed by a TypedDict below, the one definition of that result's JSON
shape: `lms logs --json` and `lms stats --json` print it, and the API's response models
(lms.api.schemas) are those same TypedDicts, so OpenAPI describes exactly what is sent.
They come from typing_extensions because pydantic reads `typing.TypedDict` only from
Python 3.12 on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from typing_extensions import TypedDict

from lms.domain.severity import SEVERITY_ORDER, SeverityName
from lms.domain.timefmt import rfc3339


class LogJson(TypedDict):
    """A stored log; `timestamp` is RFC 3339 in UTC."""

    id: int
    message_id: str
    timestamp: str
    service_name: str
    severity: SeverityName
    payload: str
    resource_id: str | None
    trace_id: str | None
    span_id: str | None
    commit: str | None
    metadata: dict[str, Any] | None


class ServiceJson(TypedDict):
    """A service's stored logs per severity (every severity, 0 if none) and in all."""

    service_name: str
    total: int
    severity: dict[SeverityName, int]


class BucketJson(TypedDict):
    """Logs stored in one time bucket for one (service, severity); `start` is RFC 3339."""

    start: str
    service_name: str
    severity: SeverityName
    count: int


class PairJson(TypedDict):
    """One (service, severity): its rows in service_logs against its service_severity sum."""

    service_name: str
    severity: SeverityName
    logs: int
    severity_total: int
    agree: bool


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: int
    message_id: str
    service_name: str
    severity: SeverityName
    timestamp: datetime
    payload: str
    resource_id: str | None
    trace_id: str | None
    span_id: str | None
    commit: str | None
    metadata: dict[str, Any] | None

    def as_json(self) -> LogJson:
        return LogJson(
            id=self.id,
            message_id=self.message_id,
            timestamp=rfc3339(self.timestamp),
            service_name=self.service_name,
            severity=self.severity,
            payload=self.payload,
            resource_id=self.resource_id,
            trace_id=self.trace_id,
            span_id=self.span_id,
            commit=self.commit,
            metadata=self.metadata,
        )


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

    def as_json(self) -> ServiceJson:
        return ServiceJson(
            service_name=self.service_name,
            total=self.total,
            severity={name: self.counts.get(name, 0) for name in SEVERITY_ORDER},
        )


@dataclass(frozen=True, slots=True)
class SeverityBucket:
    start: datetime
    service_name: str
    severity: SeverityName
    count: int

    def as_json(self) -> BucketJson:
        return BucketJson(
            start=rfc3339(self.start),
            service_name=self.service_name,
            severity=self.severity,
            count=self.count,
        )


@dataclass(frozen=True, slots=True)
class ConsistencyRow:
    service_name: str
    severity: SeverityName
    logs: int
    severity_total: int

    @property
    def agree(self) -> bool:
        return self.logs == self.severity_total

    def as_json(self) -> PairJson:
        return PairJson(
            service_name=self.service_name,
            severity=self.severity,
            logs=self.logs,
            severity_total=self.severity_total,
            agree=self.agree,
        )


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
