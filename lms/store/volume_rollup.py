"""The rollup of logs by their own timestamp (sql/010): what one batch transaction adds.

Counted from the rows the transaction really inserted, the rule that keeps service_severity
exact: when every row of the batch is new the batch itself has the counts; otherwise (some
were duplicates, a redelivery) they are read back by the transaction's batch_id. Rows are only
ever added (lms mon's user has INSERT, not UPDATE); readers SUM them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import aiomysql

from lms.domain.record import LogRecord
from lms.domain.severity import SEVERITY_ORDER

_COUNT_NEW = (
    "SELECT DATE_FORMAT(`timestamp`, '%%Y-%%m-%%d %%H:00:00'), service_name, severity, COUNT(*)"
    " FROM service_logs WHERE batch_id = %s GROUP BY 1, 2, 3"
)
INSERT_ROLLUP = (
    "INSERT INTO volume_rollup (hour_start, service_name, `debug`, `info`, `warn`, `error`,"
    " `fatal`) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)

RollupKey = tuple[datetime, str, str]
"""(hour, service, severity)."""


class _Stored(Protocol):
    @property
    def record(self) -> LogRecord: ...


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour `moment` (naive UTC) is in: the rollup's key."""
    return moment.replace(minute=0, second=0, microsecond=0)


def rollup_counts(records: Sequence[LogRecord]) -> Counter[RollupKey]:
    """The rollup rows of `records`, all of them new."""
    return Counter((hour_of(r.timestamp), r.service_name, r.severity) for r in records)


async def add_volume_rollup(
    cur: aiomysql.Cursor, logs: Sequence[_Stored], batch_id: int, every_row_new: bool
) -> None:
    """Add the rollup rows of what this transaction inserted of `logs` (batch `batch_id`)."""
    if every_row_new:
        counts = rollup_counts([item.record for item in logs])
    else:
        await cur.execute(_COUNT_NEW, (batch_id,))
        counts = Counter(
            {
                (datetime.fromisoformat(str(hour)), str(name), str(severity)): int(str(count))
                for hour, name, severity, count in await cur.fetchall()
            }
        )
    if counts:
        await cur.executemany(INSERT_ROLLUP, rollup_rows(counts))


def rollup_rows(counts: Counter[RollupKey]) -> list[tuple[object, ...]]:
    """The rows of volume_rollup holding `counts`: one per (hour, service), in key order."""
    pairs = sorted({(hour, service) for hour, service, _severity in counts})
    return [
        (hour, service, *(counts[(hour, service, s)] for s in SEVERITY_ORDER))
        for hour, service in pairs
    ]
