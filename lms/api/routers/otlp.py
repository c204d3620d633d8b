"""POST /otlp/v1/logs: OpenTelemetry OTLP/HTTP logs ingestion (lms.ingest.http.otlp decodes).

OTLP clients find it with `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=http://host:3000/otlp/v1/logs` or
`OTEL_EXPORTER_OTLP_ENDPOINT=http://host:3000/otlp`. Answers follow OTLP/HTTP, in the
request's encoding: 200 with an ExportLogsServiceResponse once Pub/Sub confirmed every valid
record (`partial_success` counts the refused ones, also when none was valid: the request was
understood and retrying it cannot help), and for errors a `google.rpc.Status` body: 400
undecodable, 413 too large, 415 another Content-Type (answered in JSON) or Content-Encoding,
429/503 with Retry-After when the publisher is full or Pub/Sub does not confirm.

Two seams are meant to be replaced by the shared ingestion parts when they are wired in:
`read_body` (the limited body reader) and `get_publisher` (the app's publisher dependency).
"""

from __future__ import annotations

import math
import zlib
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from lms.ingest.http import otlp
from lms.ingest.http.edge import check
from lms.ingest.http.errors import BadRequest, IngestError, PayloadTooLarge, UnsupportedMediaType
from lms.ingest.http.publisher import LogPublisher

router = APIRouter()

MAX_BODY_BYTES = 16 << 20
"""Bytes of a body, compressed or not (placeholder of the shared body reader's limit)."""
MAX_RECORDS = 50_000
"""Log records of one export (placeholder of the shared per-request limit)."""


def get_publisher(request: Request) -> LogPublisher:
    """The app's one publisher; to be replaced by the shared publisher dependency."""
    publisher: LogPublisher = request.app.state.publisher
    return publisher


Publisher = Annotated[LogPublisher, Depends(get_publisher)]


async def read_body(request: Request) -> bytes:
    """The request body, gunzipped, at most MAX_BODY_BYTES either way.

    TO BE REPLACED by the shared limited body reader (lms/ingest/http/body.py, gzip, deflate
    and zstd with its limits): this minimal version exists only because the OTel exporters
    send `Content-Encoding: gzip` when compression is on.
    """
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body has {len(body)} bytes, at most {MAX_BODY_BYTES}")
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise UnsupportedMediaType(f"Content-Encoding {coding!r} is not read; use gzip")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise BadRequest(f"the gzip body cannot be decompressed: {exc}") from None
    if len(data) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the body decompresses to more than {MAX_BODY_BYTES} bytes")
    return data


_OPENAPI = {
    "requestBody": {
        "required": True,
        "description": "An OTLP ExportLogsServiceRequest, binary protobuf or OTLP/JSON;"
        " `Content-Encoding: gzip` accepted.",
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
    summary="Ingest OpenTelemetry logs (OTLP/HTTP)",
    response_class=Response,
    openapi_extra=_OPENAPI,
)
async def export_logs(request: Request, publisher: Publisher) -> Response:
    """Publish the valid log records of an OTLP export; answer once Pub/Sub confirmed them."""
    encoding = otlp.encoding_of(request.headers.get("content-type"))
    if encoding is None:
        refusal = UnsupportedMediaType(
            f"Content-Type must be {otlp.Encoding.PROTOBUF} or {otlp.Encoding.JSON}"
        )
        return _error(refusal, otlp.Encoding.JSON)
    try:
        items = otlp.decode(await read_body(request), encoding, MAX_RECORDS)
        accepted, refused = check(items)
        if accepted:
            await publisher.publish(accepted)
    except IngestError as exc:
        return _error(exc, encoding)
    return Response(otlp.success_body(len(items), refused, encoding), media_type=encoding)


def _error(error: IngestError, encoding: otlp.Encoding) -> Response:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return Response(
        otlp.error_body(error, encoding),
        status_code=error.status,
        media_type=encoding,
        headers=headers,
    )
