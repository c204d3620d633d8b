"""One log ready to send: its idempotency key and its JSON body, encoded once in `emit`.

The body is what a Pub/Sub message holds (no `id`: over Pub/Sub the key travels as the
message attribute `lms_key`). Over HTTP, and in spool files, a log is one NDJSON line with
the key as its `id` field, the form `POST /v1/logs` takes; `line` and `from_line` convert.
Holding bytes makes the queue's memory bound exact and the spool a plain copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

_ID_PREFIX = b'{"id":"'


@dataclass(frozen=True, slots=True)
class Entry:
    """`key`: the log's idempotency key (kept by every retry and resend, so LMS stores the log
    once); `data`: the log as compact UTF-8 JSON, an object without `id`."""

    key: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def line(self) -> bytes:
        """The NDJSON line of this log with its key as `id` (keys are JSON-safe: no quote or
        backslash, see LMSHandler), spliced in without decoding the body again."""
        return _ID_PREFIX + self.key.encode() + b'",' + self.data[1:]


class BadLine(ValueError):
    """A spool line that is not a log this client wrote."""


def from_line(line: bytes) -> Entry:
    """The Entry of a line written by `Entry.line` (a spool file); BadLine otherwise."""
    if line.startswith(_ID_PREFIX):
        end = line.find(b'",', len(_ID_PREFIX))
        if end > 0:
            key = line[len(_ID_PREFIX) : end].decode("ascii", "replace")
            if key.isascii() and '"' not in key and "\\" not in key:
                return Entry(key, b"{" + line[end + 2 :])
    try:
        fields = json.loads(line)
    except ValueError as exc:
        raise BadLine(f"not JSON: {exc}") from None
    if not isinstance(fields, dict) or not isinstance(fields.get("id"), str):
        raise BadLine("not a log object with a string id")
    key = fields.pop("id")
    return Entry(key, json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode())
