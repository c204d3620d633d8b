"""Elasticsearch-compatible ingestion: `_bulk`, and the few read-only endpoints that log
shippers and clients probe before they send (README, "Elasticsearch bulk").

- POST|PUT /_bulk, /{index}/_bulk   NDJSON action/document pairs (lms.ingest.http.elastic);
  200 with a status per item, 429/503 with Retry-After when publishing cannot be promised
- GET|HEAD /                        cluster info: Vector, Filebeat and Logstash read the version
- GET /_cluster/health              Vector's health check
- GET /_license, /_xpack            Logstash's and Filebeat's license checks

Every answer carries `X-Elastic-Product: Elasticsearch`: the official clients (8 and later)
refuse a server whose successful answers lack it, and Logstash checks it too. Paths, query
parameters (`filter_path`, `refresh`, `pipeline`, ...) and Content-Type are read as leniently
as the shippers need: LMS answers every item in full whatever `filter_path` asks.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lms import __version__
from lms.api.dependencies import AppSettings, Publisher
from lms.api.ingestion import IngestRoute, endpoint_of, publish_checked, retry_after
from lms.ingest.http.body import BodyLimits, read_body
from lms.ingest.http.elastic import bulk_response, error_response, parse_bulk
from lms.ingest.http.errors import IngestError
from lms.settings import Settings

router = APIRouter(tags=["elasticsearch"], route_class=IngestRoute)

VERSION = "8.17.0"
"""The Elasticsearch version LMS reports: 8.x is what the shippers' 8.x releases and
Vector's `api_version: auto` expect (Filebeat refuses an older minor than its own unless
`allow_older_versions`, true by default since 8.11)."""
PRODUCT_HEADERS = {"X-Elastic-Product": "Elasticsearch"}
NAME = "lms"

_ES_ERROR = {"application/json": {"schema": {"type": "object"}}}
_BULK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "per item: 201 created, or its error; `errors` says whether any"},
    400: {"description": "not a bulk body (no action, an unreadable line)", "content": _ES_ERROR},
    413: {"description": "body or documents over a limit", "content": _ES_ERROR},
    415: {"description": "a Content-Encoding not read here", "content": _ES_ERROR},
    429: {"description": "too much being published; retry after Retry-After", "content": _ES_ERROR},
    503: {"description": "Pub/Sub did not confirm in time; retry", "content": _ES_ERROR},
}

_BULK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    }
}


async def bulk(request: Request, publisher: Publisher, settings: AppSettings) -> Response:
    """Store the documents of a bulk body as logs; see the module docstring."""
    return await _bulk(request, publisher, settings, None)


async def bulk_into(
    request: Request, index: str, publisher: Publisher, settings: AppSettings
) -> Response:
    """The same, with `index` for the actions that name none."""
    return await _bulk(request, publisher, settings, index)


async def _bulk(
    request: Request, publisher: Publisher, settings: Settings, index: str | None
) -> Response:
    started = time.monotonic()
    try:
        body = await read_body(request, BodyLimits.from_settings(settings))
        decoded = parse_bulk(body, index, settings.ingest_max_logs)
        accepted, refused, ids = await publish_checked(
            publisher, decoded.decoded, endpoint_of(request), settings.record_rules
        )
    except IngestError as exc:
        return _error(exc)
    took = int((time.monotonic() - started) * 1000)
    published = {log.index: message_id for log, message_id in zip(accepted, ids, strict=True)}
    return JSONResponse(bulk_response(decoded, refused, published, took), headers=PRODUCT_HEADERS)


def _error(exc: IngestError) -> Response:
    headers = {**PRODUCT_HEADERS, **retry_after(exc)}
    return JSONResponse(error_response(exc), status_code=exc.status, headers=headers)


async def info() -> Response:
    """What `GET /` of an Elasticsearch node says, with the version the shippers accept."""
    return JSONResponse(
        {
            "name": NAME,
            "cluster_name": NAME,
            "cluster_uuid": NAME,
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": f"lms-{__version__}",
                "build_hash": "lms",
                "build_date": "2024-12-11T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": "9.12.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        },
        headers=PRODUCT_HEADERS,
    )


async def cluster_health() -> Response:
    """Always green: whether Pub/Sub takes the logs shows in each bulk answer (503), and
    `/readyz` is the probe for operators."""
    return JSONResponse(
        {
            "cluster_name": NAME,
            "status": "green",
            "timed_out": False,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": 0,
            "active_shards": 0,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": 0,
            "active_shards_percent_as_number": 100.0,
        },
        headers=PRODUCT_HEADERS,
    )


_LICENSE = {"uid": NAME, "type": "basic", "mode": "basic", "status": "active"}


async def license_info() -> Response:
    """An active basic license: Logstash refuses a node without one, Filebeat asks too."""
    return JSONResponse(
        {"license": {**_LICENSE, "issued_to": NAME, "issuer": NAME, "max_nodes": 1000}},
        headers=PRODUCT_HEADERS,
    )


async def xpack_info() -> Response:
    """The older license endpoint (Filebeat 7), with no features enabled: the shippers then
    skip ILM set-up."""
    return JSONResponse(
        {
            "build": {"hash": "lms", "date": "2024-12-11T00:00:00.000Z"},
            "license": _LICENSE,
            "features": {},
        },
        headers=PRODUCT_HEADERS,
    )


def _route(
    path: str,
    endpoint: Callable[..., Awaitable[Response]],
    methods: tuple[str, ...],
    summary: str,
    openapi_extra: dict[str, Any] | None = None,
    name: str | None = None,
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> None:
    """One route per method, each with its own operation id: Elasticsearch serves several
    methods on a path, and one FastAPI route for all would repeat its operation id."""
    for method in methods:
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            summary=summary,
            operation_id=f"elastic_{endpoint.__name__}_{method.lower()}",
            openapi_extra=openapi_extra,
            name=name or f"elastic_{endpoint.__name__}",
            responses=responses,
        )


_route("/_bulk", bulk, ("POST", "PUT"), "Elasticsearch bulk", _BULK_BODY, "bulk", _BULK_RESPONSES)
_route(
    "/{index}/_bulk",
    bulk_into,
    ("POST", "PUT"),
    "Elasticsearch bulk into an index",
    _BULK_BODY,
    "bulk",
    _BULK_RESPONSES,
)
_route("/", info, ("GET", "HEAD"), "Elasticsearch cluster info")
_route("/_cluster/health", cluster_health, ("GET",), "Elasticsearch cluster health")
_route("/_license", license_info, ("GET",), "Elasticsearch license")
_route("/_xpack", xpack_info, ("GET",), "Elasticsearch X-Pack info")
