"""One log ready to send (`Entry`: its idempotency key and its JSON body), or one captured
and not encoded yet (`Deferred`).

An Entry is encoded once, on the handler's sending thread for most logs (emit and the
request-logging middleware queue a Deferred: a snapshot of plain values, encoded there), in
emit for the few whose `extra=` needs converting. The body is what a Pub/Sub message holds
(no `id`: over Pub/Sub the key travels as the message attribute `lms_key`). Over HTTP, and
in spool files, a log is one NDJSON line with the key as its `id` field, the form
`POST /v1/logs` takes; `line` and `from_line` convert. Holding bytes makes the spool a plain
copy.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
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


class Deferred(ABC):
    """A log captured by emit (or the middleware) as immutable plain values and encoded on
    the sending thread, so the application's thread pays the capture only.

    What it holds must not change once queued: strings, numbers, None, tuples of them, and
    containers made for it (never one the application still holds). `size` estimates its
    encoded length in bytes for the queue's byte bound (see `estimate`). `key`: the caller's
    idempotency key, or None for a fresh one, given when it is encoded.
    """

    __slots__ = ("key", "size")

    def __init__(self, size: int, key: str | None = None) -> None:
        self.size = size
        self.key = key

    @abstractmethod
    def encode(self, head: Head) -> str:
        """The log as compact JSON within LMS's limits (without `id`). May raise only for a
        bug: the handler counts such a log as rejected."""


@dataclass(frozen=True, slots=True)
class Head:
    """What a handler adds to each log it encodes: its `service_name` and constant fields
    (resource_id, commit), and both as JSON members: `service` (`"service_name":"..."`) and
    `constants` (`,"resource_id":"...",...`, or "")."""

    service_name: str
    constant_fields: dict[str, str]
    service: str
    constants: str

    @classmethod
    def of(cls, service_name: str, constant_fields: dict[str, str]) -> Head:
        def member(name: str, value: str) -> str:
            return f"{_json(name)}:{_json(value)}"

        constants = "".join("," + member(k, v) for k, v in constant_fields.items())
        return cls(
            service_name, dict(constant_fields), member("service_name", service_name), constants
        )


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


DEFERRED_BASE = 256
"""Bytes a Deferred counts beyond its strings' characters: the names and punctuation of its
fields, its numbers and timestamp (a request log's fixed part is under 250)."""


def estimate(strings: int, head: Head) -> int:
    """The queue's size of a Deferred whose variable strings have `strings` characters in all.

    The bound it keeps: each character is one byte of the estimate, as it is one byte of
    CPython's memory for ASCII and Latin-1 text (up to 4 for other text) and of the JSON for
    text without escapes (up to 4 bytes of UTF-8, 6 for the JSON escape of a control
    character); so `queue_bytes` bounds the queued logs' memory and their encoded size within
    those factors, plus Python's constant overhead per log.
    """
    return DEFERRED_BASE + strings + len(head.service) + len(head.constants)


Queued = Entry | Deferred
"""What the handler's queue holds."""


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
