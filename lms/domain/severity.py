"""The five severities: the one place that names them, in the order of the ENUM column."""

from __future__ import annotations

import enum
from typing import Literal, get_args


class Severity(enum.StrEnum):
    """The five severities, in the order of the `severity` ENUM column."""

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    FATAL = "fatal"


SeverityName = Literal["debug", "info", "warn", "error", "fatal"]
"""The same five as a type, for schemas (pydantic, OpenAPI) that need a Literal."""

SEVERITY_ORDER: tuple[SeverityName, ...] = get_args(SeverityName)
"""Typed by the Literal, so that code iterating it builds severity-keyed values mypy checks."""
SEVERITIES = frozenset(SEVERITY_ORDER)

if tuple(Severity) != SEVERITY_ORDER:  # pragma: no cover - only a typo here can get in
    raise ImportError("lms.domain.severity: Severity and SeverityName must name the same five")
