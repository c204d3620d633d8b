"""Exports: every log a query matches, newest first, as NDJSON or CSV, in constant memory.

An export walks the query's pages with the keyset cursor of GET /v1/logs (`LogReader.logs`,
MAX_LIMIT rows a page) rather than one server-side cursor (SSCursor) over one long statement:

- each page is a short statement, bounded by API_QUERY_TIMEOUT like any page, and answered by
  the same index plans (per-severity branches, the probe for full-text search); a single
  statement over millions of rows would need a timeout as long as the slowest client's
  download, or be killed mid-export by the one every other query has;
- no connection nor read view is held between pages: a client that reads slowly (or stops
  reading) holds only its coroutine, while an SSCursor keeps a pooled connection and an
  InnoDB read view open for as long as the download lasts (purge waits on it, the pool
  shrinks for every other request), and MariaDB must be drained to the end before the
  connection can be used again;
- memory is one page of rows, whatever the table holds.

What it costs: an export is not one snapshot. Logs are never returned twice nor skipped among
those stored when it started (the cursor moves strictly down the (timestamp, id) order), but
a log committed during the export appears if it sorts below the page being read (an old
timestamp arriving late) and not if it sorts above. A fixed `to` bound makes an export of a
closed range exact.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Literal

from lms.domain.timefmt import rfc3339
from lms.query.cursor import Cursor
from lms.query.filters import MAX_LIMIT, LogQuery
from lms.query.reader import LogReader
from lms.query.results import LogEntry

ExportFormat = Literal["ndjson", "csv"]
MEDIA_TYPES: dict[ExportFormat, str] = {
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}
CSV_COLUMNS = (
    "id",
    "timestamp",
    "service_name",
    "severity",
    "payload",
    "resource_id",
    "trace_id",
    "span_id",
    "commit",
    "metadata",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP's list)."""


async def export_pages(reader: LogReader, query: LogQuery) -> AsyncIterator[list[LogEntry]]:
    """The pages of every log `query` matches, newest first, from its own cursor on, whatever
    its `limit` (pages are MAX_LIMIT rows). The first page is read when the iterator is first
    advanced, so a caller can learn its errors before sending anything."""
    query = replace(query, limit=MAX_LIMIT)
    while True:
        page = await reader.logs(query)
        if page.logs:
            yield page.logs
        if page.next_cursor is None:
            return
        last = page.logs[-1]
        query = replace(query, cursor=Cursor(last.timestamp, last.id))


async def open_export(reader: LogReader, query: LogQuery, form: ExportFormat) -> AsyncIterator[str]:
    """The export of `query` in `form` as chunks of text, one a page (CSV's header first).

    Its first page is read before this returns, so a bad query (QueryError) or a database
    that cannot answer (DatabaseUnavailable) is raised here, before anything is sent; a
    failure later is raised by the iterator, midway. Pages are encoded in a worker thread:
    a thousand rows take milliseconds, which would stall every other request on the loop.
    """
    pages = export_pages(reader, query)
    first = await anext(pages, None)
    render = csv_rows if form == "csv" else ndjson

    async def chunks() -> AsyncIterator[str]:
        if form == "csv":
            yield csv_header()
        if first is None:
            return
        yield await asyncio.to_thread(render, first)
        async for page in pages:
            yield await asyncio.to_thread(render, page)

    return chunks()


def ndjson(entries: Sequence[LogEntry]) -> str:
    """One compact JSON line per log, each the item GET /v1/logs returns, newline-ended."""
    return "".join(
        json.dumps(e.as_json(), ensure_ascii=False, separators=(",", ":")) + "\n" for e in entries
    )


def csv_header() -> str:
    return _csv_text([CSV_COLUMNS])


def csv_rows(entries: Sequence[LogEntry]) -> str:
    """RFC 4180 records (CRLF, fields with a comma, quote or line break quoted) of CSV_COLUMNS:
    a null is an empty field, metadata compact JSON, and a text starting like a formula gets
    an apostrophe in front (formula_safe)."""
    return _csv_text([_csv_record(e) for e in entries])


def _csv_record(entry: LogEntry) -> list[str]:
    metadata = None
    if entry.metadata is not None:
        metadata = json.dumps(entry.metadata, ensure_ascii=False, separators=(",", ":"))
    texts = (
        entry.service_name,
        entry.severity,
        entry.payload,
        entry.resource_id,
        entry.trace_id,
        entry.span_id,
        entry.commit,
        metadata,
    )
    return [str(entry.id), rfc3339(entry.timestamp), *(formula_safe(t) for t in texts)]


def formula_safe(text: str | None) -> str:
    """`text` as a CSV cell a spreadsheet shows as text: one starting with = + - @, a tab or a
    carriage return gets a leading apostrophe (OWASP's advice against CSV injection), which
    Excel and LibreOffice hide. It is the one change an export makes to a value; NDJSON keeps
    every value exact."""
    if text is None:
        return ""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_text(records: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(records)
    return out.getvalue()
