"""The rollups of logs by their own timestamp: what one batch transaction adds to
volume_rollup (sql/010) and commit_rollup (sql/015).

Both come from one count per (UTC hour, service, severity, commit) of the rows the
transaction really inserted, the rule that keeps service_severity exact: when every row of the
batch is new the batch itself has the counts; otherwise (some were duplicates, a redelivery)
they are read back by the transaction's batch_id.

volume_rollup is append-only (one row per (hour, service) and batch; readers SUM them, and
`lms retention` compacts them). commit_rollup holds one row per (commit, hour, service): the
batch's counts are added to it by INSERT ... ON DUPLICATE KEY UPDATE (lms mon's user has
UPDATE on that table), in key order so that two replicas lock its keys in one order. Logs
without a commit add nothing to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import aiomysql

from lms.domain.record import LogRecord
from lms.domain.severity import SEVERITY_ORDER

_COUNT_NEW = (
    "SELECT DATE_FORMAT(`timestamp`, '%%Y-%%m-%%d %%H:00:00'), service_name, severity,"
    " `commit`, COUNT(*) FROM service_logs WHERE batch_id = %s GROUP BY 1, 2, 3, 4"
)
_SEVERITIES = "`debug`, `info`, `warn`, `error`, `fatal`"
INSERT_ROLLUP = (
    f"INSERT INTO volume_rollup (hour_start, service_name, {_SEVERITIES})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
UPSERT_COMMITS = (
    f"INSERT INTO commit_rollup (`commit`, hour_start, service_name, {_SEVERITIES})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
    + ", ".join(f"`{s}` = `{s}` + VALUES(`{s}`)" for s in SEVERITY_ORDER)
)

RollupKey = tuple[datetime, str, str, str | None]
"""(hour, service, severity, commit or None)."""
_SEVERITY_AT: dict[str, int] = {severity: i for i, severity in enumerate(SEVERITY_ORDER)}
RowKey = tuple[Any, ...]
"""What a row of a rollup table is keyed by (its first columns)."""


class _Stored(Protocol):
    @property
    def record(self) -> LogRecord: ...


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour `moment` (naive UTC) is in: the rollups' key."""
    return moment.replace(minute=0, second=0, microsecond=0)


def rollup_counts(records: Sequence[LogRecord], commits: bool = True) -> Counter[RollupKey]:
    """The counts of `records`, all of them new (without `commits`, every commit None)."""
    return Counter(
        (hour_of(r.timestamp), r.service_name, r.severity, r.commit if commits else None)
        for r in records
    )


async def add_volume_rollup(
    cur: aiomysql.Cursor,
    logs: Sequence[_Stored],
    batch_id: int,
    every_row_new: bool,
    commits: bool = True,
) -> None:
    """Add the rollup rows of what this transaction inserted of `logs` (batch `batch_id`):
    volume_rollup's, and with `commits` commit_rollup's (only bench/ turns that off)."""
    if every_row_new:
        counts = rollup_counts([item.record for item in logs], commits)
    else:
        await cur.execute(_COUNT_NEW, (batch_id,))
        counts = Counter(
            {
                (
                    datetime.fromisoformat(str(hour)),
                    str(name),
                    str(severity),
                    str(commit) if commits and commit is not None else None,
                ): int(str(count))
                for hour, name, severity, commit, count in await cur.fetchall()
            }
        )
    if counts:
        await cur.executemany(INSERT_ROLLUP, rollup_rows(counts))
        found = commit_rows(counts)
        if found:
            await cur.executemany(UPSERT_COMMITS, found)


def _rows(
    counts: Counter[RollupKey], key: Callable[[RollupKey], RowKey | None]
) -> list[tuple[object, ...]]:
    """One row per `key` of the counts (None: no row), its five severity counts after it, in
    key order."""
    rows: dict[RowKey, list[int]] = {}
    for counted, n in counts.items():
        row = key(counted)
        if row is not None:
            rows.setdefault(row, [0] * len(SEVERITY_ORDER))[_SEVERITY_AT[counted[2]]] += n
    return [(*at, *severities) for at, severities in sorted(rows.items())]


def rollup_rows(counts: Counter[RollupKey]) -> list[tuple[object, ...]]:
    """The rows of volume_rollup holding `counts`: one per (hour, service), in key order."""
    return _rows(counts, lambda k: (k[0], k[1]))


def commit_rows(counts: Counter[RollupKey]) -> list[tuple[object, ...]]:
    """The rows of commit_rollup holding `counts`: one per (commit, hour, service) of the logs
    with a commit, in key order."""
    return _rows(counts, lambda k: None if k[3] is None else (k[3], k[0], k[1]))
