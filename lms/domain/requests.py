"""Which logs are HTTP requests, and the figures the request rollup (sql/011) keeps of them.

Pure, so the rule is tested without a database. The rule follows what lms_client's
request-logging middleware writes (its requestlog.py, the README's "Request log fields"):
a log is a request when its `metadata.http` is an object with

- `status_code`: a JSON number with no fraction, 100..599 (a request the client gave up on
  before any response has none, and is not counted);
- `duration_ms`: a JSON number >= 0;
- `route`: a string not only of spaces (the route template, `/users/{id}`), or else
  `path`: a non-empty string, turned into a bounded fallback template by `fallback_route`.

`method` is `metadata.http.method` when it is a string (its first 16 characters), else "".
Trailing spaces are cut from the route and the method: the rollup's key columns compare PAD
SPACE, so `/x ` and `/x` are one key there and must be one here.
The user is `metadata.user_id` as the user_id column of sql/008 holds it (an integer as its
digits). The backfill of sql/011 applies the same rule in SQL; tests/test_analytics_requests.py
checks that both agree on a catalogue of edge cases.

Latency is counted in a fixed histogram of LATENCY_BOUNDS: quarter-octave bounds (each
2^(1/4) times the one before, rounded to the microsecond) from 0.5 ms to 65.536 s. A
percentile is estimated as the geometric middle of the bin holding its rank, so within that
range it is off by at most sqrt(2^(1/4)) - 1, about 9.1%, of the true value (PERCENTILE_ERROR);
below 0.5 ms it is reported as 0.5 ms, at or above 65.536 s as 65536 ms (a floor).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise

import msgspec

LATENCY_BOUNDS: tuple[float, ...] = tuple(round(2 ** (k / 4), 3) for k in range(-4, 65))
"""Bin i holds durations in [LATENCY_BOUNDS[i-1], LATENCY_BOUNDS[i]) ms; bin 0 those below
0.5 ms, the last bin those of 65.536 s or more: len(LATENCY_BOUNDS) + 1 bins."""
BINS = len(LATENCY_BOUNDS) + 1
PERCENTILE_ERROR = max(math.sqrt(hi / lo) - 1 for lo, hi in pairwise(LATENCY_BOUNDS))
ACCURACY = (
    "p50/p95/p99 come from a fixed latency histogram of quarter-octave bins (each bound"
    f" 2^(1/4) times the previous) from {LATENCY_BOUNDS[0]} ms to {LATENCY_BOUNDS[-1]:.0f} ms:"
    " each is the geometric middle of the bin holding the nearest-rank percentile, at most"
    f" {PERCENTILE_ERROR:.1%} off the exact value in that range; below {LATENCY_BOUNDS[0]} ms"
    f" it reads {LATENCY_BOUNDS[0]}, from {LATENCY_BOUNDS[-1]:.0f} ms on"
    f" {LATENCY_BOUNDS[-1]:.0f} (a floor). Counts and averages are exact."
)
MAX_METHOD = 16
MAX_ROUTE = 255
ROUTE_SEGMENTS = 3
"""Segments of a path kept as a fallback route: /a/b/c/d counts as /a/b/c."""
_VARIABLE_SEGMENT = re.compile(r"/[^/]*[0-9][^/]*")
FALLBACK_ID = "/{id}"


def fallback_route(path: str) -> str:
    """The template a path without a route counts under, with its cardinality bounded: the
    query string cut, every segment holding a digit replaced by {id}, at most ROUTE_SEGMENTS
    segments and MAX_ROUTE characters (`/orders/123/items?x=1` -> `/orders/{id}/items`).
    A path of words only (`/users/alice`) stays as it is: give such apps route templates."""
    masked = _VARIABLE_SEGMENT.sub(FALLBACK_ID, path.split("?", 1)[0])
    return "/".join(masked.split("/")[: ROUTE_SEGMENTS + 1])[:MAX_ROUTE].rstrip(" ")


@dataclass(frozen=True, slots=True)
class Request:
    """What the rollup keeps of one request log."""

    method: str
    route: str
    status: int
    duration_ms: float
    user_id: str | None

    @property
    def bin(self) -> int:
        return bisect_right(LATENCY_BOUNDS, self.duration_ms)


def _number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (a boolean is no number)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond a double, which the edge rules refuse
            return None
    return None


def request_of(metadata: str | None) -> Request | None:
    """The request a log's metadata (compact JSON text) describes, or None."""
    if metadata is None or '"http"' not in metadata:  # most logs: no parse at all
        return None
    try:
        # msgspec, not json: 3-4 times faster, on every request log the writer stores and the
        # readers count. Stored metadata is strict JSON (no NaN, no key twice), which both
        # read alike.
        meta = msgspec.json.decode(metadata)
    except msgspec.DecodeError:
        return None
    http = meta.get("http") if isinstance(meta, dict) else None
    if not isinstance(http, dict):
        return None
    status, duration = _number(http.get("status_code")), _number(http.get("duration_ms"))
    if status is None or not status.is_integer() or not 100 <= status <= 599:
        return None
    if duration is None or duration < 0:
        return None
    route, path = http.get("route"), http.get("path")
    if isinstance(route, str) and route.rstrip(" "):
        template = route[:MAX_ROUTE].rstrip(" ")
    elif isinstance(path, str) and path:
        template = fallback_route(path)
    else:
        return None
    method = http.get("method")
    user = meta.get("user_id")
    if isinstance(user, int) and not isinstance(user, bool):
        user_id: str | None = str(user)
    else:
        user_id = user if isinstance(user, str) and 1 <= len(user) <= MAX_ROUTE else None
    return Request(
        method[:MAX_METHOD].rstrip(" ") if isinstance(method, str) else "",
        template,
        int(status),
        duration,
        user_id,
    )


# --- reading the histogram ------------------------------------------------------------------

PERCENTILES = (50, 95, 99)


def bin_value(i: int) -> float:
    """The duration a percentile falling in bin i reads as (see the module's docstring)."""
    if i == 0:
        return LATENCY_BOUNDS[0]
    if i >= len(LATENCY_BOUNDS):
        return LATENCY_BOUNDS[-1]
    return round(math.sqrt(LATENCY_BOUNDS[i - 1] * LATENCY_BOUNDS[i]), 3)


BIN_VALUES = tuple(bin_value(i) for i in range(BINS))
"""bin_value of every bin: a request's answer reads thousands of histograms."""
_NONE = tuple(None for _ in PERCENTILES)


def percentiles(histogram: Sequence[int]) -> tuple[float | None, ...]:
    """p50, p95, p99 (nearest rank: the ceil(p * n)-th smallest) of a histogram of BINS
    counts; None for each when it is empty."""
    cumulative = list(accumulate(histogram))
    total = cumulative[-1] if cumulative else 0
    if not total:
        return _NONE
    return tuple(
        BIN_VALUES[bisect_right(cumulative, max(1, -(-p * total // 100)) - 1)] for p in PERCENTILES
    )


def sparse_percentiles(bins: Mapping[int, int]) -> tuple[float | None, ...]:
    """percentiles() of a histogram given as its non-zero bins (bin -> count): a route's hour
    holds a few of the BINS, and a month of hourly buckets reads thousands of such hours."""
    total = sum(bins.values())
    if not total:
        return _NONE
    ranks = [max(1, -(-p * total // 100)) for p in PERCENTILES]
    found: list[float | None] = []
    running = 0
    for i in sorted(bins):
        running += bins[i]
        while running >= ranks[len(found)]:
            found.append(BIN_VALUES[i])
            if len(found) == len(ranks):
                return tuple(found)
    raise ValueError(f"negative counts in {bins!r}")
