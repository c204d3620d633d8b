"""The Elasticsearch `_bulk` protocol, decoded into the edge's candidates and answered as
Elasticsearch answers, so that Fluent Bit's `es` output, Vector's `elasticsearch` sink,
Filebeat, Logstash and the official clients' bulk helpers can ship to LMS unchanged.

Pure: bytes in, candidates and a response body out; the router owns HTTP and publishing.

A body is NDJSON: an action line (`{"index": {...}}`, `{"create": {...}}`, `{"update": ...}`,
`{"delete": ...}`) followed, for all but `delete`, by a document line. LMS stores logs
append-only, so `update` and `delete` are refused per item (status 400, never silently
dropped); `index` and `create` both append. A body whose action lines cannot be read is
refused whole (400), as Elasticsearch does; a document line that is not a valid log only
refuses its own item.

Mapping of a document to the native fields (README, "Elasticsearch bulk"): native keys
(`service_name`, `payload`/`message`, `severity`/`level`, `timestamp`, tracing context,
`metadata`) are taken as they are, and the gaps are filled from what shippers send:

- `message` from a string `log` (Fluent Bit's `tail` and container logs; an object `log` is
  ECS, read below).
- `timestamp` from `@timestamp` (Fluent Bit, Filebeat, Logstash; Vector sends `timestamp`);
  either may be RFC 3339, an ISO date-time without offset (UTC, as Elasticsearch reads it) or
  epoch milliseconds (a number or a string of digits: Elasticsearch's default date format).
- `service_name` from ECS `service.name` (dotted key or nested object), else, unless a
  `resource_id` stands in for it (the native rule), the index name: shippers route each
  service to its own index more often than they name the service in the document.
- `level` from ECS `log.level`; a document with no level at all is `info` (most shippers
  forward plain lines that carry none).
- `trace_id` / `span_id` from ECS `trace.id` / `span.id`.
- Everything else goes into `metadata` (beside the keys of the document's own `metadata`
  object, which win), with the index name as `_index` (a key no Elasticsearch document may
  hold, so it never collides).

The action's `_id` is the log's idempotency key, so a shipper's retry stores nothing twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lms.domain import strictjson
from lms.domain.record import Reason
from lms.ingest.http.edge import Candidate, Refused, key_problem
from lms.ingest.http.errors import BadRequest, IngestError, PayloadTooLarge, why_not_json

WRITE_ACTIONS = frozenset({"index", "create"})
"""Actions that append a log; Elasticsearch's other two need a document store."""
ACTIONS = WRITE_ACTIONS | {"update", "delete"}

UNSUPPORTED_ACTION = "unsupported_action"
"""Refused.reason of an `update` or `delete` item."""
INVALID_ID = "invalid_id"
"""Refused.reason of an item whose `_id` cannot be an idempotency key."""

DEFAULT_LEVEL = "info"
INDEX_KEY = "_index"
"""The metadata key that holds the index name."""

NATIVE_KEYS = (
    "service_name",
    "payload",
    "message",
    "severity",
    "level",
    "timestamp",
    "trace_id",
    "traceId",
    "span_id",
    "spanId",
    "resource_id",
    "resourceId",
    "commit",
)
"""Top-level keys the native rules read; passed through untouched (`metadata` is merged)."""

_NAIVE_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?")
_DIGITS = re.compile(r"-?\d{1,16}")


@dataclass(frozen=True, slots=True)
class BulkItem:
    """What the response says of one item besides its outcome: the action as the client
    named it, the index and the `_id` it gave (None when it gave none)."""

    action: str
    index: str
    id: str | None


@dataclass(frozen=True, slots=True)
class Bulk:
    """A decoded body: per item (numbered 0.. in body order) its response header in
    `items` and, at the same position, its candidate or refusal in `decoded`."""

    items: list[BulkItem]
    decoded: list[Candidate | Refused]


def parse_bulk(body: bytes, url_index: str | None = None, max_items: int | None = None) -> Bulk:
    """Decode a `_bulk` body; `url_index` is the `{index}` of `/{index}/_bulk`, the default
    of actions that name none. Raises BadRequest when the body as a whole is unreadable, and
    PayloadTooLarge past `max_items` actions (the per-request bound on logs)."""
    lines = [(number, line) for number, line in enumerate(body.split(b"\n"), 1) if line.strip()]
    items: list[BulkItem] = []
    decoded: list[Candidate | Refused] = []
    position = 0
    while position < len(lines):
        line_number, line = lines[position]
        action, meta = _action(line, line_number)
        index = _index(meta, url_index, line_number)
        if max_items is not None and len(items) == max_items:
            raise PayloadTooLarge(f"the bulk body holds more than {max_items} actions")
        number = len(items)
        raw_id = meta.get("_id")
        items.append(BulkItem(action, index, None if raw_id is None else str(raw_id)))
        if action == "delete":
            decoded.append(_refused_action(number, action))
            position += 1
            continue
        if position + 1 >= len(lines):
            raise BadRequest(
                f"the {action} action on line [{line_number}] is not followed by a document line"
            )
        if action in WRITE_ACTIONS:
            decoded.append(_write_item(number, index, raw_id, lines[position + 1][1]))
        else:
            decoded.append(_refused_action(number, action))
        position += 2
    if not items:
        raise BadRequest("the bulk body holds no action (Validation Failed: no requests added)")
    return Bulk(items, decoded)


def _action(line: bytes, line_number: int) -> tuple[str, dict[str, Any]]:
    """The action name and its metadata object, or BadRequest: without a readable action
    line the rest of the body cannot be paired up."""
    try:
        obj = strictjson.loads(line)
    except strictjson.DuplicateKeyError as exc:
        raise BadRequest(f"Malformed action/metadata line [{line_number}]: {exc}") from None
    except (ValueError, RecursionError):
        raise BadRequest(
            f"Malformed action/metadata line [{line_number}]: not a JSON object"
        ) from None
    if not isinstance(obj, dict) or len(obj) != 1:
        raise BadRequest(
            f"Malformed action/metadata line [{line_number}]: expected an object with one"
            " key, the action"
        )
    [(action, meta)] = obj.items()
    if action not in ACTIONS:
        raise BadRequest(
            f"Malformed action/metadata line [{line_number}], expected field [create],"
            f" [delete], [index] or [update] but found [{action}]"
        )
    if not isinstance(meta, dict):
        raise BadRequest(
            f"Malformed action/metadata line [{line_number}]: the {action} metadata is not"
            " an object"
        )
    return action, meta


def _index(meta: dict[str, Any], url_index: str | None, line_number: int) -> str:
    index = meta.get("_index", url_index)
    if not isinstance(index, str) or not index:
        raise BadRequest(
            f"Validation Failed: the action on line [{line_number}] names no index, and the"
            " URL none either (POST /{index}/_bulk)"
        )
    return index


def _refused_action(number: int, action: str) -> Refused:
    return Refused(
        number,
        UNSUPPORTED_ACTION,
        f"LMS stores logs append-only: the {action} action is not supported, use index or create",
    )


class _ItemRefused(Exception):
    """Why one item is refused before the native rules see it (its `_id`, its timestamp)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _write_item(number: int, index: str, raw_id: object, doc_line: bytes) -> Candidate | Refused:
    try:
        doc = strictjson.loads(doc_line)
    except UnicodeDecodeError as exc:
        return Refused(number, Reason.INVALID_UTF8.value, f"not valid UTF-8 at byte {exc.start}")
    except (ValueError, RecursionError) as exc:
        detail = why_not_json(exc)
        return Refused(number, Reason.INVALID_JSON.value, f"failed to parse the document: {detail}")
    if not isinstance(doc, dict):
        return Refused(
            number,
            Reason.NOT_AN_OBJECT.value,
            f"the document is a JSON {type(doc).__name__}, not an object",
        )
    try:
        return Candidate(number, document_fields(doc, index), _key(raw_id))
    except _ItemRefused as refusal:
        return Refused(number, refusal.reason, refusal.detail)


def _key(raw_id: object) -> str | None:
    """The idempotency key from `_id`; Elasticsearch takes numbers as their text too."""
    if raw_id is None:
        return None
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise _ItemRefused(INVALID_ID, f"_id must be a string, not {type(raw_id).__name__}")
    key = str(raw_id)
    problem = key_problem(key)
    if problem is not None:
        raise _ItemRefused(INVALID_ID, f"_id {problem} (LMS keeps it as the idempotency key)")
    return key


def document_fields(doc: dict[str, Any], index: str) -> dict[str, Any]:
    """The native fields of one document (see the module docstring for the mapping).
    Consumes `doc`: what is left of it becomes metadata."""
    fields: dict[str, Any] = {key: doc.pop(key) for key in NATIVE_KEYS if key in doc}
    if "payload" not in fields and "message" not in fields and isinstance(doc.get("log"), str):
        fields["message"] = doc.pop("log")
    stamp = fields.pop("timestamp", None)
    if stamp is None:
        stamp = doc.pop("@timestamp", None)
    if stamp is not None:
        fields["timestamp"] = _timestamp(stamp)
    if fields.get("service_name") is None:
        service = _take(doc, "service", "name")
        if service is not None:
            fields["service_name"] = service
        elif not (fields.get("resource_id") or fields.get("resourceId")):
            fields["service_name"] = index
    if fields.get("severity") is None and fields.get("level") is None:
        fields["level"] = _take(doc, "log", "level") or DEFAULT_LEVEL
    for native, camel, ecs in (("trace_id", "traceId", "trace"), ("span_id", "spanId", "span")):
        if not fields.get(native) and not fields.get(camel):
            value = _take(doc, ecs, "id")
            if value is not None:
                fields[native] = value
    fields["metadata"] = _metadata(doc, index)
    return fields


def _take(doc: dict[str, Any], parent: str, child: str) -> Any:
    """Remove and return an ECS field given as a dotted key (`"service.name"`) or nested
    (`{"service": {"name": ..}}`); a nested parent left empty is removed too."""
    dotted = f"{parent}.{child}"
    if doc.get(dotted) is not None:
        return doc.pop(dotted)
    nested = doc.get(parent)
    if not isinstance(nested, dict) or nested.get(child) is None:
        return None
    value = nested.pop(child)
    if not nested:
        del doc[parent]
    return value


def _metadata(rest: dict[str, Any], index: str) -> Any:
    """The document's own `metadata` object over the remaining fields, plus the index. A
    `metadata` that is not an object is passed on as it is, for the native rules to refuse."""
    own = rest.pop("metadata", None)
    if own is not None and not isinstance(own, dict):
        return own
    return {**rest, **(own or {}), INDEX_KEY: index}


def _timestamp(value: Any) -> Any:
    """An RFC 3339 string for the native rules: epoch millis and offset-less ISO date-times
    converted (as Elasticsearch reads them), anything else passed on for the rules to judge."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise _ItemRefused(
                Reason.INVALID_FIELD.value, f"timestamp {value!r} is out of range as epoch_millis"
            ) from None
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, str) and _NAIVE_DATETIME.fullmatch(value):
        return value + "Z"
    return value


ERROR_TYPES = {
    UNSUPPORTED_ACTION: "illegal_argument_exception",
    INVALID_ID: "illegal_argument_exception",
}
"""Elasticsearch error type of an item refusal; a document the rules refuse is a
`mapper_parsing_exception`, as Elasticsearch calls a document it cannot index."""
REQUEST_ERROR_TYPES = {
    400: "parse_exception",
    413: "content_too_long_exception",
    415: "media_type_header_exception",
    429: "es_rejected_execution_exception",
    503: "unavailable_shards_exception",
}
"""Elasticsearch error type of a request refusal, by status: clients read `error.type`."""


def bulk_response(
    bulk: Bulk, refused: list[Refused], ids: dict[int, str], took: int
) -> dict[str, Any]:
    """The `_bulk` answer, items in body order. `refused` are the items not published;
    `ids` the Pub/Sub message ids of the published ones by item number, which stand in for
    the `_id` of items that gave none (as Elasticsearch reports the id it generated)."""
    reasons = {item.index: item for item in refused}
    items: list[dict[str, Any]] = []
    for number, item in enumerate(bulk.items):
        header: dict[str, Any] = {"_index": item.index, "_id": item.id or ids.get(number)}
        refusal = reasons.get(number)
        if refusal is None:
            header |= {
                "_version": 1,
                "result": "created",
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "status": 201,
            }
        else:
            header |= {
                "status": 400,
                "error": {
                    "type": ERROR_TYPES.get(refusal.reason, "mapper_parsing_exception"),
                    "reason": refusal.detail,
                },
            }
        items.append({item.action: header})
    return {"took": took, "errors": bool(refused), "items": items}


def error_response(error: IngestError) -> dict[str, Any]:
    """A request-level refusal as Elasticsearch's error body (`error.type`, `status`), which
    clients parse, and whose 429 and 503 they retry."""
    cause = {
        "type": REQUEST_ERROR_TYPES.get(error.status, "illegal_argument_exception"),
        "reason": error.detail,
    }
    return {"error": {"root_cause": [cause], **cause}, "status": error.status}
