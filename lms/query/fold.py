"""Series folded into one row per key: fewer rows for the pure-Python driver to decode.

aiomysql decodes each row and field in Python, ~15-20 us a row: a month of hourly counts of
10 services is 7,200 rows, ~150 ms before any figure is computed. Folded, the server sends
one row per key (service, or route) holding its entries as one text, `unit|value|...,` each,
which Python splits with `str.split` at C speed.

GROUP_CONCAT's result is cut at `group_concat_max_len` (the reader sets it to
GROUP_CONCAT_MAX_LEN; MySQL's default is 1,024 bytes, MariaDB's 1 MiB) and a row cannot pass
`max_allowed_packet`. So every entry ends with the separator and a folded row carries its
entries' COUNT(*): a text cut short either lacks its final separator or holds fewer entries,
and then the same rows are read unfolded instead, so a key with very many entries is slower,
never wrong. (A length computed in SQL would build every entry twice.)
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
    """`inner`'s rows (its columns `keys` then `values`, so named: numbers, dates or hex,
    never NULL, never a separator) as one row per key: the key, its number of entries, their
    text. No `keys`: one row for all of them."""
    sql, args = inner
    key = "".join(f"{k}, " for k in keys)
    entry = f"CONCAT(CONCAT_WS('{FIELD_SEPARATOR}', {', '.join(values)}), '{ENTRY_SEPARATOR}')"
    folded = (
        f"SELECT {key}COUNT(*), GROUP_CONCAT({entry} SEPARATOR '') FROM ({sql}) AS unfolded"
        + (f" GROUP BY {', '.join(keys)}" if keys else "")
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
        if raw is None:  # no keys and no rows: COUNT(*) 0, GROUP_CONCAT NULL
            continue
        entries = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(ENTRY_SEPARATOR)
        if len(entries) != int(row[width]) + 1 or entries[-1]:  # cut short
            return _unfolded(await fetch(*inner), width)
        del entries[-1]  # the empty text after the last entry's separator
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
