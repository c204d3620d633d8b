"""The filters of a log search, checked once, whichever front end (HTTP or CLI) built them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lms.domain.severity import SEVERITY_ORDER
from lms.query.cursor import Cursor
from lms.query.errors import QueryError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Filters of GET /v1/logs and `lms logs`; all optional, combined with AND.

    `since`/`until` are naive UTC; `since` is inclusive, `until` exclusive.
    """

    service: str | None = None
    severities: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    resource_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    commit: str | None = None
    parent_resource_id: str | None = None
    q: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError("limit", f"must be 1..{MAX_LIMIT}, not {self.limit}")
        unknown = [s for s in self.severities if s not in SEVERITY_ORDER]
        if unknown:
            raise QueryError(
                "severity", f"{unknown[0]!r} is not one of {', '.join(SEVERITY_ORDER)}"
            )
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise QueryError("to", "must be later than from (the range is [from, to))")
