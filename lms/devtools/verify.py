"""Did a run store every published log once and count it once? The check behind `make run`,
`make e2e`, the fault tests and the pipeline tests.

Per (service, severity): published = COUNT(*) of service_logs = SUM(count) of
service_severity, and no message id has two rows. The three numbers come from three
independent places (the publisher's confirmed totals, the rows, the counters each transaction
appended), so a lost log, a log stored twice and a log counted twice each break a different
equality. The result is data, not a verdict, so that each caller asserts, prints or polls on it
its own way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lms.domain.identifiers import printable
from lms.ingest.sources.pubsub.keys import CLIENT_PREFIX
from lms.settings import Settings
from lms.store.connection import connect

Key = tuple[str, str]
"""(service_name, severity)."""


def pair_key(service: str, severity: object) -> Key:
    """The pair as MySQL groups it: VARCHAR comparison ignores trailing spaces (PAD SPACE), so
    "svc " and "svc" are one group there, and must be one here too."""
    return service.rstrip(" "), str(severity)


def group_pairs(counts: Mapping[Key, int]) -> Counter[Key]:
    """`counts` added up per `pair_key`, without pairs of zero."""
    grouped: Counter[Key] = Counter()
    for (service, severity), count in counts.items():
        grouped[pair_key(service, severity)] += count
    return +grouped


@dataclass(frozen=True)
class Mismatch:
    key: Key
    published: int
    stored: int
    counted: int


@dataclass(frozen=True)
class Consistency:
    """What the database holds against what was published, per (service, severity)."""

    published: dict[Key, int]
    stored: dict[Key, int]
    """COUNT(*) of service_logs."""
    counted: dict[Key, int]
    """SUM(count) of service_severity."""
    duplicate_ids: dict[str, int]
    """Message ids with more than one row, and their number of rows."""
    rejected: int
    """Rows of rejected_messages."""
    client_keyed: int = 0
    """Rows stored under a client's idempotency key (logs that came through HTTP ingestion
    with an id, or another publisher setting lms_key), so a check can tell the ways in apart."""

    @property
    def pairs(self) -> list[Key]:
        return sorted(set(self.published) | set(self.stored) | set(self.counted))

    @property
    def mismatches(self) -> list[Mismatch]:
        found = []
        for key in self.pairs:
            published = self.published.get(key, 0)
            stored, counted = self.stored.get(key, 0), self.counted.get(key, 0)
            if not published == stored == counted:
                found.append(Mismatch(key, published, stored, counted))
        return found

    @property
    def total_stored(self) -> int:
        """Rows of service_logs: with `ok`, the number of logs published."""
        return sum(self.stored.values())

    @property
    def duplicate_rows(self) -> int:
        """Rows beyond the first of each message id."""
        return sum(rows - 1 for rows in self.duplicate_ids.values())

    @property
    def overcounted(self) -> int:
        """Counts in service_severity beyond the rows they stand for."""
        return sum(max(0, self.counted.get(key, 0) - self.stored.get(key, 0)) for key in self.pairs)

    @property
    def ok(self) -> bool:
        """Every published log stored once and counted once, and nothing else stored."""
        return not self.mismatches and not self.duplicate_ids

    def table(self) -> str:
        """The pairs side by side, mismatches marked, for a person to read."""
        head = (
            f"{'service':<16} {'severity':<8} {'published':>10} {'stored':>10} {'SUM(count)':>10}"
        )
        lines = [head]
        wrong = {mismatch.key for mismatch in self.mismatches}
        for key in self.pairs:
            mark = "   <-- mismatch" if key in wrong else ""
            lines.append(
                f"{printable(key[0]):<16} {key[1]:<8} {self.published.get(key, 0):>10}"
                f" {self.stored.get(key, 0):>10} {self.counted.get(key, 0):>10}{mark}"
            )
        totals = (sum(column.values()) for column in (self.published, self.stored, self.counted))
        lines.append("{:<25} {:>10} {:>10} {:>10}".format("total", *totals))
        if self.duplicate_ids:
            sample = sorted(self.duplicate_ids)[:5]
            lines.append(f"{len(self.duplicate_ids)} message ids stored twice, e.g. {sample}")
        return "\n".join(lines)


async def check_consistency(settings: Settings, published: Mapping[Key, int]) -> Consistency:
    """Read the database of `settings` and compare it with `published`."""
    conn = await connect(settings, settings.mysql_database, autocommit=True)
    try:
        async with conn.cursor() as cur:

            async def rows(sql: str) -> list[tuple[Any, ...]]:
                await cur.execute(sql)
                return list(await cur.fetchall())

            logs = await rows(
                "SELECT service_name, severity, COUNT(*) FROM service_logs"
                " GROUP BY service_name, severity"
            )
            sums = await rows(
                "SELECT service_name, severity, SUM(`count`) FROM service_severity"
                " GROUP BY service_name, severity"
            )
            twice = await rows(
                "SELECT message_id, COUNT(*) FROM service_logs GROUP BY message_id"
                " HAVING COUNT(*) > 1"
            )
            ((rejected,),) = await rows("SELECT COUNT(*) FROM rejected_messages")
            await cur.execute(
                "SELECT COUNT(*) FROM service_logs WHERE idempotency_key LIKE %s",
                (CLIENT_PREFIX + "%",),
            )
            ((keyed,),) = await cur.fetchall()
    finally:
        conn.close()
    return Consistency(
        published=dict(group_pairs(published)),
        stored=dict(group_pairs(_counts(logs))),
        counted=dict(group_pairs(_counts(sums))),
        duplicate_ids={str(mid): int(rows) for mid, rows in twice},
        rejected=int(rejected),
        client_keyed=int(keyed),
    )


def _counts(rows: list[tuple[Any, ...]]) -> dict[Key, int]:
    counts: Counter[Key] = Counter()
    for service, severity, count in rows:
        counts[pair_key(str(service), severity)] += int(count)
    return dict(counts)


async def wait_consistent(
    settings: Settings,
    published: Mapping[Key, int],
    timeout: float,  # noqa: ASYNC109  (the answer after the timeout is the point, not a cancel)
    interval: float = 1.0,
) -> Consistency:
    """Poll until the database agrees with `published` or `timeout` runs out; the last look.

    For a monitor still draining: the counts only grow, so a disagreement is final only once
    the monitor had the time to finish.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await check_consistency(settings, published)
        if result.ok or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class SimReport:
    """The `--report` file of `lms pub` or `lms sim`: the publishes Pub/Sub confirmed."""

    published: int
    totals: dict[Key, int]

    @classmethod
    def load(cls, path: Path) -> SimReport:
        """Read and check it; ValueError says what is wrong with it."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            totals: Counter[Key] = Counter()
            for row in document["totals"]:
                totals[(str(row["service"]), str(row["severity"]))] += int(row["count"])
            published = int(document["published"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable report {path}: {exc!r}") from None
        if published != sum(totals.values()):
            raise ValueError(
                f"report {path} says published={published} but its totals add up to"
                f" {sum(totals.values())}"
            )
        return cls(published, dict(totals))
