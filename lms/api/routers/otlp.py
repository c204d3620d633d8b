"""POST /otlp/v1/logs: OpenTelemetry OTLP/HTTP logs ingestion (lms.ingest.http.otlp decodes).

OTLP clients find it with `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=http://host:3000/otlp/v1/logs` or
`OTEL_EXPORTER_OTLP_ENDPOINT=http://host:3000/otlp`. Answers follow OTLP/HTTP, in the
request's encoding: 200 with an ExportLogsServiceResponse once Pub/Sub confirmed every valid
record (`partial_success` counts the refused ones, also when none was valid: the request was
understood and retrying it cannot help), and for errors a `google.rpc.Status` body: 400
undecodable, 413 too large, 415 another Content-Type (answered in JSON) or Content-Encoding,
429/503 with Retry-After when the publisher is full or Pub/Sub does not confirm.

The body is read by the shared bounded reader (gzip, deflate, zstd), and the records go
through the same edge check and publisher as every ingestion endpoint (lms.api.ingestion).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lms.api.dependencies import AppSettings, Publisher
from lms.api.ingestion import IngestRoute, endpoint_of, publish_checked, retry_after
from lms.ingest.http import otlp
from lms.ingest.http.body import BodyLimits, read_body
from lms.ingest.http.errors import IngestError, UnsupportedMediaType

router = APIRouter(route_class=IngestRoute)


_OPENAPI = {
    "requestBody": {
        "required": True,
        "description": "An OTLP ExportLogsServiceRequest, binary protobuf or OTLP/JSON;"
        " `Content-Encoding` gzip, deflate or zstd accepted.",
        "content": {
            otlp.Encoding.PROTOBUF.value: {"schema": {"type": "string", "format": "binary"}},
            otlp.Encoding.JSON.value: {"schema": {"type": "object"}},
        },
    },
    "responses": {
        "200": {
            "description": "ExportLogsServiceResponse; `partialSuccess` counts and explains"
            " the refused records",
            "content": {
                otlp.Encoding.PROTOBUF.value: {"schema": {"type": "string", "format": "binary"}},
                otlp.Encoding.JSON.value: {"schema": {"type": "object"}},
            },
        },
        "400": {"description": "undecodable body (google.rpc.Status)"},
        "413": {"description": "body or record count over the limit (google.rpc.Status)"},
        "415": {"description": "unsupported Content-Type or Content-Encoding"},
        "429": {"description": "too much being published at once; retry after Retry-After"},
        "503": {"description": "Pub/Sub did not confirm in time; retry after Retry-After"},
    },
}


@router.post(
    "/otlp/v1/logs",
    name="otlp",
    summary="Ingest OpenTelemetry logs (OTLP/HTTP)",
    response_class=Response,
    openapi_extra=_OPENAPI,
)
async def export_logs(request: Request, publisher: Publisher, settings: AppSettings) -> Response:
    """Publish the valid log records of an OTLP export; answer once Pub/Sub confirmed them."""
    encoding = otlp.encoding_of(request.headers.get("content-type"))
    if encoding is None:
        refusal = UnsupportedMediaType(
            f"Content-Type must be {otlp.Encoding.PROTOBUF} or {otlp.Encoding.JSON}"
        )
        return _error(refusal, otlp.Encoding.JSON)
    try:
        body = await read_body(request, BodyLimits.from_settings(settings))
        items = otlp.decode(body, encoding, settings.ingest_max_logs)
        _published, refused, _ids = await publish_checked(
            publisher, items, endpoint_of(request), settings.record_rules
        )
    except IngestError as exc:
        return _error(exc, encoding)
    return Response(otlp.success_body(len(items), refused, encoding), media_type=encoding)


def _error(error: IngestError, encoding: otlp.Encoding) -> Response:
    return Response(
        otlp.error_body(error, encoding),
        status_code=error.status,
        media_type=encoding,
        headers=retry_after(error),
    )
