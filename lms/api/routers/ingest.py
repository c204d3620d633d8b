"""POST /v1/logs: the native ingestion endpoint (lms.ingest.http.native's format).

202 once every valid log of the body is confirmed by Pub/Sub, naming the refused ones; 400
with the same shape when none is valid; the request-level refusals (413, 415, 429, 503) are
IngestErrors, answered by the app's handler.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lms.api.dependencies import AppSettings, Publisher
from lms.api.ingestion import IngestRoute, endpoint_of, publish_checked
from lms.api.schemas import IngestResult, Problem, RejectedLog
from lms.domain.record import MAX_CONTEXT, MAX_PAYLOAD, MAX_SERVICE_NAME
from lms.domain.severity import SEVERITY_ORDER
from lms.ingest.http import native
from lms.ingest.http.body import ENCODINGS, BodyLimits, read_body
from lms.ingest.http.edge import MAX_KEY

router = APIRouter(route_class=IngestRoute)

_CONTEXT: dict[str, Any] = {"type": ["string", "null"], "maxLength": MAX_CONTEXT}
_LOG: dict[str, Any] = {
    "type": "object",
    "description": "A log, with the fields of a Pub/Sub message (see the README's Message"
    " format: `message`/`level` are accepted for `payload`/`severity`, camelCase for the"
    " tracing context); other fields are ignored. A log breaking a rule (a key given twice"
    " included) is refused by itself (`rejected`), not the whole body.",
    "properties": {
        "id": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_KEY,
            "description": "the client's idempotency key; not a field of the log (it travels"
            " as the Pub/Sub attribute lms_key); no whitespace at either end, no control"
            " character",
        },
        "service_name": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_SERVICE_NAME,
            "description": "no whitespace at either end, no control character",
        },
        "payload": {"type": "string", "maxLength": MAX_PAYLOAD},
        "severity": {"type": "string", "enum": list(SEVERITY_ORDER)},
        "timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "at most MAX_FUTURE_SKEW seconds ahead of the server's clock",
        },
        **{name: _CONTEXT for name in ("trace_id", "span_id", "resource_id", "commit")},
        "metadata": {"type": ["object", "null"]},
    },
}
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"oneOf": [_LOG, {"type": "array", "items": _LOG}]},
        },
        native.NDJSON: {
            "schema": {"type": "string", "description": "one log object (JSON) per line"},
        },
    },
}
_CONTENT_ENCODING: dict[str, Any] = {
    "name": "Content-Encoding",
    "in": "header",
    "required": False,
    "description": "compression of the body",
    "schema": {"type": "string", "enum": list(ENCODINGS)},
}
_RETRY_AFTER: dict[str, Any] = {
    "description": "seconds to wait before retrying",
    "schema": {"type": "integer", "minimum": 1},
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": IngestResult | Problem,
        "description": "no valid log in the body (the rejected shape), or a body that is not"
        " JSON at all (detail)",
    },
    413: {"model": Problem, "description": "body, decompressed body or log count over a limit"},
    415: {"model": Problem, "description": "a Content-Encoding not read here"},
    429: {
        "model": Problem,
        "description": "too much being published; nothing of the request was: retry it",
        "headers": {"Retry-After": _RETRY_AFTER},
    },
    503: {
        "model": Problem,
        "description": "Pub/Sub did not confirm in time; nothing is promised: retry it",
        "headers": {"Retry-After": _RETRY_AFTER},
    },
}


@router.post(
    "/logs",
    name="native",
    status_code=202,
    response_model=IngestResult,
    summary="Send logs",
    responses=_RESPONSES,
    openapi_extra={"requestBody": _REQUEST_BODY, "parameters": [_CONTENT_ENCODING]},
)
async def ingest(request: Request, publisher: Publisher, settings: AppSettings) -> Response:
    """Publish one log object, a JSON array of them, or NDJSON (`application/x-ndjson`).

    Valid logs are published even when others of the body are not; 202 means Pub/Sub
    confirmed every one counted in `accepted`. Refused logs are listed with their index.
    """
    body = await read_body(request, BodyLimits.from_settings(settings))
    items = native.decode(body, request.headers.get("content-type"), settings.ingest_max_logs)
    published, refused, _ids = await publish_checked(
        publisher, items, endpoint_of(request), settings.record_rules
    )
    result = IngestResult(
        accepted=len(published),
        rejected=[RejectedLog(index=r.index, reason=r.reason, detail=r.detail) for r in refused],
    )
    return JSONResponse(result.model_dump(), status_code=202 if published else 400)
