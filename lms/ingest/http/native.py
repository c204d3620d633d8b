"""The native format of `POST /v1/logs`: the fields of a Pub/Sub message, over HTTP.

A body is one JSON log object, a JSON array of them, or NDJSON (Content-Type
`application/x-ndjson`, one object per line, blank lines skipped). Any other Content-Type is
read as JSON, so `curl -d` works without a header. Items are numbered as the client sees them:
the position in the array, or the line number counted from 0 (blank lines keep their number,
so an index always points at the line an editor shows as index + 1). Bodies are UTF-8, as
the Pub/Sub messages `lms mon` reads (json's guessing of UTF-16 and -32 is not used).

A log's optional `id` (a string of 1 to MAX_KEY characters; null counts as absent) is its
idempotency key. It is taken out of the fields and travels as the Candidate's key (the
Pub/Sub attribute lms_key), not in the message body: it names the delivery, not the log, so
it must not end up in `metadata` or be read as a field by `lms mon`.
"""

from __future__ import annotations

import json
from typing import Any

from lms.domain import strictjson
from lms.domain.record import Reason
from lms.ingest.http.edge import MAX_KEY, Candidate, Refused, key_problem
from lms.ingest.http.errors import BadRequest, PayloadTooLarge, why_not_json

NDJSON = "application/x-ndjson"
NDJSON_TYPES = frozenset({NDJSON, "application/ndjson", "application/jsonl"})
"""Media types read line by line."""
ID_FIELD = "id"
INVALID_ID = "invalid_id"


def decode(body: bytes, content_type: str | None, max_logs: int) -> list[Candidate | Refused]:
    """The body's logs, one item per log in the client's numbering.

    Raises BadRequest when the body as a whole is not the format (not JSON, or JSON that is
    neither an object nor an array), PayloadTooLarge when it holds more than `max_logs`.
    """
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type in NDJSON_TYPES:
        return _ndjson(body, max_logs)
    try:
        text = body.decode("utf-8")
        document = strictjson.loads(text)
    except strictjson.DuplicateKeyError as exc:
        document = _with_duplicates(text, exc)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not JSON: {why_not_json(exc)}") from None
    if isinstance(document, dict):
        return [_item(0, document, body)]
    if isinstance(document, strictjson.DuplicateKeyError):
        return [_item(0, document)]
    if not isinstance(document, list):
        raise BadRequest("the body must be a JSON log object or an array of them")
    _count(len(document), max_logs)
    return [_item(index, value) for index, value in enumerate(document)]


def _with_duplicates(text: str, duplicate: strictjson.DuplicateKeyError) -> Any:
    """The document of a body in which some object names a key twice: an array's elements
    each on its own (so a duplicate refuses only its log), otherwise the error itself."""
    try:
        whole = json.loads(text)  # the rest of the body must be JSON all the same
        return strictjson.array_items(text) if isinstance(whole, list) else duplicate
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not JSON: {why_not_json(exc)}") from None


def _ndjson(body: bytes, max_logs: int) -> list[Candidate | Refused]:
    lines = [(number, line) for number, line in enumerate(body.split(b"\n")) if line.strip()]
    _count(len(lines), max_logs)
    items: list[Candidate | Refused] = []
    for number, line in lines:
        try:
            value = strictjson.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            items.append(Refused(number, Reason.INVALID_UTF8.value, str(exc)))
        except (ValueError, RecursionError) as exc:
            items.append(Refused(number, Reason.INVALID_JSON.value, why_not_json(exc)))
        else:
            items.append(_item(number, value, line))
    return items


def _item(index: int, value: Any, raw: bytes | None = None) -> Candidate | Refused:
    """One log: `value` as decoded from `raw` (its text in the body, when it has its own)."""
    if isinstance(value, strictjson.DuplicateKeyError):
        return Refused(index, Reason.INVALID_JSON.value, str(value))
    if not isinstance(value, dict):
        return Refused(index, Reason.NOT_AN_OBJECT.value, "a log must be a JSON object")
    if ID_FIELD not in value:  # published as sent (Candidate.raw)
        return Candidate(index, value, None, raw)
    fields = value  # decoded for this request alone: taking the id out alters nothing else
    key = fields.pop(ID_FIELD)
    if key is None:
        return Candidate(index, fields)
    if not isinstance(key, str):
        return Refused(index, INVALID_ID, f"id must be a string of 1 to {MAX_KEY} characters")
    problem = key_problem(key)
    if problem is not None:
        return Refused(index, INVALID_ID, f"id {problem}")
    return Candidate(index, fields, key)


def _count(logs: int, max_logs: int) -> None:
    if logs > max_logs:
        raise PayloadTooLarge(
            f"{logs} logs in one request, the bound is {max_logs} (INGEST_MAX_LOGS);"
            " split them over several requests"
        )
