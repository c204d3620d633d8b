"""The five severities: the one place that names them, in the order of the ENUM column."""

from __future__ import annotations

import enum
from typing import Literal


class Severity(enum.StrEnum):
    """The five severities, in the order of the `severity` ENUM column."""

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    FATAL = "fatal"


SeverityName = Literal["debug", "info", "warn", "error", "fatal"]
"""The same five as a type, for schemas (pydantic, OpenAPI) that need a Literal."""

SEVERITY_ORDER: tuple[str, ...] = tuple(s.value for s in Severity)
SEVERITIES = frozenset(SEVERITY_ORDER)
