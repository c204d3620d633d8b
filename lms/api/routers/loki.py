"""Loki push ingestion: `POST /loki/api/v1/push`, answered as Loki answers, so Promtail, Alloy,
Fluent Bit's `loki` output and Loki client libraries can point at LMS unchanged.

- 204 (no body): every entry was valid and Pub/Sub confirmed all of them.
- 400 (text): some entries are refused. As Loki does for entries failing its validation, the
  valid ones are published (and confirmed) first, then the text names each refused entry by its
  index across the request's streams, with a last line `total ignored: N out of M`. Shippers
  do not retry a 400, so the refused ones are reported, never silently dropped, and the valid
  ones are never lost with them. A body that is not a push at all is a 400 too.
- 413, 415, 429 and 503 (text, 429/503 with Retry-After) as lms.ingest.http.errors says.

Loki's legacy `/api/prom/push` is not served: it takes another JSON shape (labels as a string,
RFC 3339 `ts`), has been deprecated since Loki 1.0, and every current shipper's Loki URL is
`/loki/api/v1/push`.

The body is read by the shared bounded reader (gzip, deflate, zstd; snappy is part of the
protobuf form and undone by the decoder), and the entries go through the same edge check and
publisher as every ingestion endpoint (lms.api.ingestion).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from lms.api.dependencies import AppSettings, Publisher
from lms.api.ingestion import IngestRoute, endpoint_of, publish_checked, retry_after
from lms.ingest.http import loki
from lms.ingest.http.body import BodyLimits, read_body
from lms.ingest.http.edge import Refused
from lms.ingest.http.errors import IngestError, PayloadTooLarge

PUSH_PATH = "/loki/api/v1/push"
MAX_REPORTED = 100
"""Refused entries a 400 names one by one."""

router = APIRouter(tags=["ingestion"], route_class=IngestRoute)

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"description": text, "content": {"text/plain": {}}}
    for status, text in (
        (400, "Not a push body, or some entries refused (the valid ones were published)"),
        (413, "The body is too large"),
        (415, "Neither JSON nor snappy protobuf, or an unknown Content-Encoding"),
        (429, "Too much is being published at once; retry after Retry-After"),
        (503, "Pub/Sub did not confirm in time; nothing is promised, retry after Retry-After"),
    )
}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_JSON_PUSH = {
    "type": "object",
    "required": ["streams"],
    "properties": {
        "streams": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["values"],
                "properties": {
                    "stream": _LABELS,
                    "values": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "description": "[unix nanoseconds, line] or [ns, line, {metadata}]",
                            "prefixItems": [
                                {"type": "string", "pattern": "^[0-9]{1,19}$"},
                                {"type": "string"},
                                _LABELS,
                            ],
                            "minItems": 2,
                            "maxItems": 3,
                        },
                    },
                },
            },
        }
    },
}
_BODY = {
    "required": True,
    "content": {
        loki.JSON: {"schema": _JSON_PUSH},
        loki.PROTOBUF[0]: {"schema": {"type": "string", "format": "binary"}},
    },
}


@router.post(
    PUSH_PATH,
    name="loki",
    status_code=204,
    response_class=Response,
    summary="Loki push",
    responses={204: {"description": "Every entry is published"}, **_ERRORS},
    openapi_extra={"requestBody": _BODY},
)
async def push(request: Request, publisher: Publisher, settings: AppSettings) -> Response:
    """Loki's push API, JSON or snappy protobuf (`logproto.PushRequest`); see the README
    section "Loki push" for how labels map to LMS fields."""
    try:
        limits = BodyLimits.from_settings(settings)
        body = await read_body(request, limits)
        items = loki.decode(body, request.headers.get("content-type"), limits.max_decoded)
        if len(items) > settings.ingest_max_logs:
            raise PayloadTooLarge(
                f"the push has {len(items)} entries, allowed at most {settings.ingest_max_logs}"
                " (INGEST_MAX_LOGS)"
            )
        _published, refused, _ids = await publish_checked(
            publisher, items, endpoint_of(request), settings.record_rules
        )
    except IngestError as exc:
        return _error(exc)
    if refused:
        return PlainTextResponse(_report(refused, len(items)), status_code=400)
    return Response(status_code=204)


def _report(refused: Sequence[Refused], total: int) -> str:
    """Loki's validation-error text; a body of thousands of bad entries names the first
    MAX_REPORTED, the count says how many there are."""
    lines = [f"entry {item.index}: {item.reason}: {item.detail}" for item in refused[:MAX_REPORTED]]
    if len(refused) > MAX_REPORTED:
        lines.append(f"... and {len(refused) - MAX_REPORTED} more refused entries")
    lines.append(f"total ignored: {len(refused)} out of {total}")
    return "\n".join(lines) + "\n"


def _error(exc: IngestError) -> Response:
    return PlainTextResponse(exc.detail + "\n", status_code=exc.status, headers=retry_after(exc))
