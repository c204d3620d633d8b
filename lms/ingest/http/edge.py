"""The edge of HTTP ingestion: logs as a protocol decoded them, checked by the same rules as a
Pub/Sub message in `lms mon` (lms.domain.record), before anything is published.

Every protocol decoder (native JSON/NDJSON, OTLP, Loki, Elasticsearch bulk) produces, per log
of a request, either a `Candidate` in the native format's fields or a `Refused` naming why that
one log cannot be taken. `check` validates the candidates; the valid ones become `Accepted`,
ready to publish. So partial acceptance (some logs of a request stored, others refused with
their index) works the same way for every protocol.

These three are made once per log (thousands per second), so they are plain slotted
dataclasses, treated as values but not frozen: a frozen dataclass's `__init__` sets each
field through `object.__setattr__`, three times the cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lms.domain import strictjson
from lms.domain.identifiers import identifier_problem
from lms.domain.record import DEFAULT_RULES, Rules, rejection_of

MAX_KEY = 128
"""Characters of an idempotency key (a native log's `id`, an Elasticsearch `_id`)."""
MAX_MESSAGE = 8_000_000
"""Bytes of one log's message body: below Pub/Sub's 10 MB per message (and the publisher's
9 MB per request), so a log the edge accepts can always be published. Only fields the rules
do not read (or a client's whitespace) can make a log this large."""
TOO_LARGE = "too_large"
"""The edge's reason for a log whose message would exceed MAX_MESSAGE."""


@dataclass(slots=True)
class Candidate:
    """One log of a request, in the native format's fields, not yet checked.

    `fields` are what a Pub/Sub message would hold (service_name, payload, severity,
    timestamp as RFC 3339, trace_id, span_id, resource_id, commit, metadata). `key` is the
    idempotency key, when the protocol gives or derives one.

    `raw`, when set, is the log's JSON text as the client sent it (UTF-8), of which `fields`
    are exactly the strict decoding (lms.domain.strictjson): then it is the message body,
    published unchanged. `lms mon` decodes the same bytes with the same decoder, so it reads
    what the edge checked, and the edge spends nothing encoding the log again (that was a
    tenth of its time under NDJSON bodies). A decoder that changed anything (took an `id`
    out, mapped another protocol's fields) leaves it None and the fields are encoded.
    """

    index: int
    fields: dict[str, Any]
    key: str | None = None
    raw: bytes | None = None


@dataclass(slots=True)
class Refused:
    """A log of a request that is not published: `index` as the protocol numbers its items,
    `reason` a short fixed word (a rejection reason of lms.domain.record, or the edge's own),
    `detail` for people."""

    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class Accepted:
    """A valid log, as the Pub/Sub message body that `lms mon` will parse again."""

    index: int
    data: bytes
    key: str | None = None


def key_problem(key: str) -> str | None:
    """Why `key` cannot be an idempotency key (a phrase to follow its name), or None. The
    key column is compared PAD SPACE too, so `k` and `k ` would be one key: the second log
    would be dropped as a duplicate of the first."""
    if not 1 <= len(key) <= MAX_KEY:
        return f"has {len(key)} characters, allowed 1..{MAX_KEY}"
    return identifier_problem(key)


def check(
    items: Iterable[Candidate | Refused], rules: Rules = DEFAULT_RULES
) -> tuple[list[Accepted], list[Refused]]:
    """Split decoded items into what is published and what is refused, keeping the order."""
    accepted: list[Accepted] = []
    refused: list[Refused] = []
    for item in items:
        if isinstance(item, Refused):
            refused.append(item)
            continue
        rejection = rejection_of(item.fields, rules)
        if rejection is not None:
            refused.append(Refused(item.index, rejection.reason.value, rejection.detail))
            continue
        data = item.raw if item.raw is not None and len(item.raw) <= MAX_MESSAGE else None
        if data is None:
            data = encode(item.fields)  # compact: drops a sent log's padding
        if len(data) > MAX_MESSAGE:
            detail = f"the log is {len(data)} bytes as compact JSON, at most {MAX_MESSAGE}"
            refused.append(Refused(item.index, TOO_LARGE, detail))
        else:
            accepted.append(Accepted(item.index, data, item.key))
    return accepted, refused


def encode(fields: dict[str, Any]) -> bytes:
    """The fields as the message body: compact JSON, non-ASCII kept as UTF-8.

    A field the rules do not read may hold a lone surrogate (JSON's `"\\ud800"` decodes to
    one), which UTF-8 cannot encode: then the body is written with `\\u` escapes, which
    decode to the same fields in `lms mon`, rather than failing the request.
    """
    try:
        return _compact(fields).encode("utf-8")
    except UnicodeEncodeError:
        return _compact_ascii(fields).encode("ascii")


_compact = strictjson.compact_encoder()
_compact_ascii = strictjson.compact_encoder(ensure_ascii=True)
