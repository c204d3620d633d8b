"""Prometheus metrics of `lms api`, served on its own `/metrics`.

A registry of their own, not the default one: `lms mon`'s metrics live in the default
registry (lms.ops.metrics), and an `lms api` that happened to import them must not report a
monitor's counters as its own. The process collector comes along, for the RSS that must stay
flat under load. `endpoint` is the route's name (`native` for POST /v1/logs), fixed by the code.
With API_WORKERS > 1 each worker counts for itself and a scrape reaches one of them.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

INGEST_REQUESTS = Counter(
    "lms_api_ingest_requests",
    "Ingestion requests answered, by endpoint and status class (2xx, 4xx, 5xx)",
    ["endpoint", "status_class"],
    registry=REGISTRY,
)
INGEST_RETRY_LATER = Counter(
    "lms_api_ingest_retry_later",
    "Ingestion requests answered 429 (in-flight bound) or 503 (Pub/Sub did not confirm)",
    ["endpoint", "status"],
    registry=REGISTRY,
)
LOGS_ACCEPTED = Counter(
    "lms_api_logs_accepted",
    "Logs published and confirmed by Pub/Sub",
    ["endpoint"],
    registry=REGISTRY,
)
LOGS_REJECTED = Counter(
    "lms_api_logs_rejected",
    "Logs refused at the edge, by reason",
    ["endpoint", "reason"],
    registry=REGISTRY,
)
PUBLISH_DURATION = Histogram(
    "lms_api_publish_duration_seconds",
    "From handing a request's logs to the publisher to Pub/Sub's confirmation (or failure)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
INFLIGHT_BYTES = Gauge(
    "lms_api_publish_inflight_bytes",
    "Bytes published and not yet confirmed (bounded by INGEST_MAX_INFLIGHT_BYTES)",
    registry=REGISTRY,
)

RETRY_LATER_STATUSES = frozenset({429, 503})


def record_response(endpoint: str, status: int) -> None:
    """Count one answered ingestion request."""
    INGEST_REQUESTS.labels(endpoint, f"{status // 100}xx").inc()
    if status in RETRY_LATER_STATUSES:
        INGEST_RETRY_LATER.labels(endpoint, str(status)).inc()


def watch_inflight(inflight_bytes: Callable[[], int]) -> None:
    """Report the publisher's bytes in flight at each scrape."""
    INFLIGHT_BYTES.set_function(lambda: float(inflight_bytes()))
