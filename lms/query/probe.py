"""The full-text probe: a search's words tested on the newest index entries first, before the
FULLTEXT index, whose cost grows with the matches in the whole table, not with the page."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lms.domain.severity import SEVERITY_ORDER
from lms.query.cursor import Bound
from lms.query.filters import LogQuery
from lms.query.search import TextSearch
from lms.query.sql import (
    IX_SEVERITY,
    IX_TIMESTAMP,
    JOINED_COLUMNS,
    NEWEST_FIRST,
    Conditions,
    before,
    driver_index,
    filter_conditions,
    severities_of,
    time_range,
)

PROBE_DEPTH = 50_000
"""Newest candidate index entries a full-text search first checks with REGEXPs (~0.5 us each,
on their short_payload), before it falls back to the FULLTEXT index, whose cost grows with
the number of matches in the whole table, not with the page."""


@dataclass(frozen=True, slots=True)
class _Stream:
    """Rows read in (timestamp, id) order along one index, where `eq` holds."""

    index: str
    eq: Conditions


def _streams(query: LogQuery) -> list[_Stream]:
    """How a probe walks the newest rows: one stream per severity along the index of the
    driving filter, or of the severity alone without one."""
    index, eq = driver_index(query)
    return [
        _Stream(index, eq + Conditions(["severity = %s"], [severity]))
        for severity in severities_of(query) or SEVERITY_ORDER
    ]


@dataclass(frozen=True, slots=True)
class ProbePlan:
    """SQL of a probe: first the bounds, then the probe itself given them."""

    bounds_sql: str
    bounds_args: list[object]
    probe: Callable[..., tuple[str, list[object]]]
    """(floor[, fetch]) -> the SQL of the probe, which returns at most `fetch` rows (default:
    limit + 1, a page and whether another follows)."""


def build_probe_sql(
    query: LogQuery,
    search: TextSearch,
    depth: int,
    ceiling: Bound | None = None,
    walk: int | None = None,
) -> ProbePlan:
    """A search without the FULLTEXT index over the next `depth` candidate entries below
    `ceiling` (None: the newest), that is, below what an earlier, shallower probe read.

    The candidates are read in streams (see `_streams`). The bounds query gives, per stream,
    the (timestamp, id) of its `depth / streams`-th entry below the ceiling, and the stream's
    number, reading index entries only; no row for a stream that is shorter. Without any
    filter one walk down the small timestamp index gives the bound of all streams at once.
    The newest bound is the floor down to which every stream is then read, so every row found
    is certain (nothing newer is left unread) and no stream is read further than the page can
    use. The newest bound comes from the densest stream: a deeper probe walks only that one
    (`walk`, its number), as the others would only give older bounds.

    The probe reads the entries from the floor up to the ceiling. Every index it reads holds
    short_payload (migration 004): an entry whose short_payload lacks a word is dropped there. The
    other entries are sorted by time and their rows read in that order, each checked against
    every filter and the REGEXPs, until `fetch` rows match. So the rows read are those found,
    plus the long payloads (over 255 characters) of the window that do not match.
    """
    streams = _streams(query)
    window = time_range(query) + before(ceiling)
    walks = streams
    if streams[0].index == IX_SEVERITY and not query.severities:
        walks = [_Stream(IX_TIMESTAMP, Conditions())]
    per_walk = max(depth // len(walks), query.limit + 1)
    parts: list[str] = []
    args: list[object] = []
    for number, stream in enumerate(walks):
        if walk is not None and number != walk:
            continue
        cond = stream.eq + window
        parts.append(
            f"(SELECT `timestamp`, id, {number} FROM service_logs"
            f" FORCE INDEX ({stream.index}){cond.where()} {NEWEST_FIRST} LIMIT 1 OFFSET %s)"
        )
        args.extend([*cond.args, per_walk - 1])
    bounds_sql = " UNION ALL ".join(parts)

    on_entry = Conditions()
    if search.patterns:
        words = " AND ".join(["short_payload REGEXP %s"] * len(search.patterns))
        on_entry.add(f"(short_payload IS NULL OR ({words}))", *search.patterns)
    on_row = filter_conditions(query, search, use_index=False)

    def probe(floor: Bound | None, fetch: int = query.limit + 1) -> tuple[str, list[object]]:
        branches: list[str] = []
        branch_args: list[object] = []
        for stream in streams:
            cond = stream.eq + window + on_entry
            if floor is not None:
                t = floor.timestamp
                cond.add("`timestamp` >= %s AND (`timestamp` > %s OR id >= %s)", t, t, floor.id)
            branches.append(
                f"SELECT id, `timestamp` FROM service_logs FORCE INDEX ({stream.index})"
                f"{cond.where()}"
            )
            branch_args.extend(cond.args)
        # STRAIGHT_JOIN: the candidates first, sorted, so rows are read newest first and
        # only until the page is full.
        sql = (
            f"SELECT STRAIGHT_JOIN {JOINED_COLUMNS} FROM ({' UNION ALL '.join(branches)}) AS c"
            f" JOIN service_logs AS l ON l.id = c.id{on_row.where()}"
            f" ORDER BY c.`timestamp` DESC, c.id DESC LIMIT %s"
        )
        return sql, [*branch_args, *on_row.args, fetch]

    return ProbePlan(bounds_sql, args, probe)


def first_probe_depth(full: int, limit: int) -> int:
    """A tenth of the full depth: a common word fills the page from that many entries."""
    return min(full, max(full // 10, limit + 1))


def next_probe_depth(depth: int, found: int, limit: int, full: int) -> int:
    """How deep the next probe looks, from what the shallower ones found.

    Matches grow with depth, so a probe that found `found` of the `limit + 1` rows it needs
    at `depth` should find them all at about depth * (limit + 1) / found; 20% more covers
    most of the chance in so few matches (a miss costs one more probe, below this one), and
    each probe goes at least half as deep again. Nothing found: the word is rare here, go to
    full depth at once.
    """
    if found == 0:
        return full
    wanted = math.ceil(depth * (limit + 1) / found * 1.2)
    return min(full, max(wanted, depth * 3 // 2))
