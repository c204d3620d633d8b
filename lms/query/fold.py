"""Series folded into one row per key: fewer rows for the pure-Python driver to decode.

aiomysql decodes each row and field in Python, ~15-20 us a row: a month of hourly counts of
10 services is 7,200 rows, ~150 ms before any figure is computed. Folded, the server sends
one row per key (service, or route) holding its entries as one text,
`GROUP_CONCAT(CONCAT_WS('|', unit, values...) SEPARATOR ',')`, which Python splits with
`str.split` at C speed.

GROUP_CONCAT's result is cut at `group_concat_max_len` (the reader sets it to
GROUP_CONCAT_MAX_LEN; MySQL's default is 1,024 bytes, MariaDB's 1 MiB) and a row cannot pass
`max_allowed_packet`. A folded row therefore also carries the length its text must have (its
entries' lengths and separators): when the text is shorter, the fold was cut and the same rows
are read unfolded instead, so a key with very many entries is slower, never wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lms.query.reader import Fetch

Statement = tuple[str, list[object]]
FIELD_SEPARATOR = "|"
ENTRY_SEPARATOR = ","

Folded = list[tuple[tuple[str, ...], list[list[str]]]]
"""Per key (its columns as text), its entries, each the text of its value columns."""


def fold_sql(inner: Statement, keys: Sequence[str], values: Sequence[str]) -> Statement:
    """`inner`'s rows (its columns `keys` then `values`, so named: numbers and dates, never
    NULL) as one row per key: the key, the length of its text, the text of its entries."""
    sql, args = inner
    key = ", ".join(keys)
    entry = f"CONCAT_WS('{FIELD_SEPARATOR}', {', '.join(values)})"
    folded = (
        f"SELECT {key}, CAST(SUM(CHAR_LENGTH({entry}) + 1) - 1 AS UNSIGNED),"
        f" GROUP_CONCAT({entry} SEPARATOR '{ENTRY_SEPARATOR}')"
        f" FROM ({sql}) AS unfolded GROUP BY {key}"
    )
    return folded, list(args)


async def fetch_folded(
    fetch: Fetch, inner: Statement, keys: Sequence[str], values: Sequence[str]
) -> Folded:
    """The entries of `inner` per key, read folded (or unfolded when a fold was cut)."""
    width = len(keys)
    out: Folded = []
    for row in await fetch(*fold_sql(inner, keys, values)):
        raw = row[width + 1]
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if len(text) != int(row[width]):
            return _unfolded(await fetch(*inner), width)
        entries = text.split(ENTRY_SEPARATOR)
        out.append((tuple(map(str, row[:width])), [e.split(FIELD_SEPARATOR) for e in entries]))
    return out


def _unfolded(rows: Sequence[Sequence[Any]], width: int) -> Folded:
    """`inner`'s rows grouped by key in Python, as the fold would have sent them: a value
    as the text CONCAT_WS makes of it (a DATETIME as `YYYY-MM-DD HH:MM:SS`)."""
    by_key: dict[tuple[str, ...], list[list[str]]] = {}
    for row in rows:
        key = tuple(map(str, row[:width]))
        by_key.setdefault(key, []).append([str(value) for value in row[width:]])
    return list(by_key.items())
