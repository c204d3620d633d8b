"""The filters of a log search, checked once, whichever front end (HTTP or CLI) built them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from lms.domain.identifiers import identifier_problem
from lms.domain.severity import SEVERITY_ORDER
from lms.query.cursor import Cursor
from lms.query.errors import QueryError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
EXACT_FILTERS = ("service", "resource_id", "trace_id", "span_id", "commit", "parent_resource_id")
"""Filters compared for equality with a stored name or id."""


def exact_problem(value: str) -> str | None:
    """Why `value` cannot be the value of an equality filter, or None. The columns compare
    PAD SPACE, so `svc ` would silently match `svc`; and no stored name or id holds
    whitespace at its ends or a control character (lms.domain.identifiers) to be found."""
    problem = identifier_problem(value)
    return None if problem is None else f"{problem}; no stored value does"


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
    user_id: str | None = None
    """metadata.user_id (an integer one as its digits), the user_id column of sql/008."""
    pattern_id: int | None = None
    """The pattern (lms.domain.patterns) of the payload, the pattern_id column of sql/009."""
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
        for name in EXACT_FILTERS:
            value = getattr(self, name)
            problem = None if value is None else exact_problem(value)
            if problem is not None:
                raise QueryError(name, problem)
        if self.pattern_id is not None and not 0 <= self.pattern_id < 1 << 64:
            raise QueryError("pattern", "must be 16 hex digits")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise QueryError("to", "must be later than from (the range is [from, to))")

    @classmethod
    def from_input(cls, values: Mapping[str, Any]) -> LogQuery:
        """The query from a front end's input named by these fields (the API's LogsParams,
        the `lms logs` arguments), so that no front end copies them one by one.

        Keys that are no field (`json`, ...) are ignored; `severities` may be any iterable
        or None, and `cursor` the text a client got as `next_cursor` (empty: none).
        """
        known = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        known["severities"] = tuple(known.get("severities") or ())
        cursor = known.get("cursor")
        if isinstance(cursor, str):
            known["cursor"] = Cursor.decode(cursor) if cursor else None
        return cls(**known)
