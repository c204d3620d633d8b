"""Time buckets of the per-severity series: their SQL formats, default windows and size limit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

from lms.query.errors import QueryError

Bucket = Literal["minute", "hour", "day"]
BUCKET_FORMATS: Mapping[str, str] = {
    "minute": "%Y-%m-%d %H:%i:00",
    "hour": "%Y-%m-%d %H:00:00",
    "day": "%Y-%m-%d 00:00:00",
}
BUCKET_SPANS: Mapping[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
BUCKET_DEFAULT_WINDOWS: Mapping[str, timedelta] = {
    "minute": timedelta(hours=1),
    "hour": timedelta(days=1),
    "day": timedelta(days=30),
}
MAX_BUCKETS = 10_000


def bucket_range(
    bucket: Bucket,
    since: datetime | None,
    until: datetime | None,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """The [since, until) of a severity series, defaults applied and size checked."""
    if bucket not in BUCKET_FORMATS:
        raise QueryError("bucket", f"must be one of {', '.join(BUCKET_FORMATS)}")
    if until is None:
        until = (now or datetime.now(UTC)).replace(tzinfo=None)
    if since is None:
        since = until - BUCKET_DEFAULT_WINDOWS[bucket]
    if until <= since:
        raise QueryError("to", "must be later than from (the range is [from, to))")
    if (until - since) / BUCKET_SPANS[bucket] > MAX_BUCKETS:
        raise QueryError(
            "from",
            f"the range holds more than {MAX_BUCKETS} {bucket} buckets;"
            " shorten it or use a larger bucket",
        )
    return since, until
