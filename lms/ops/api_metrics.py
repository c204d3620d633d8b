"""Prometheus metrics of `lms api`, served on its own `/metrics`.

A registry of their own, not the default one: `lms mon`'s metrics live in the default
registry (lms.ops.metrics), and an `lms api` that happened to import them must not report a
monitor's counters as its own. The process collector comes along, for the RSS that must stay
flat under load. `endpoint` is the route's name (`native` for POST /v1/logs), fixed by the code.

With API_WORKERS > 1 a scrape reaches one worker, so the workers share their values through
prometheus_client's multiprocess mode (lms.api.server sets PROMETHEUS_MULTIPROC_DIR before it
starts them): a scrape of any worker reports the sum over all of them. Process metrics do not
add up, so there each worker's RSS is sampled into `lms_api_worker_resident_memory_bytes`
(one series per pid) instead.
"""

from __future__ import annotations

import asyncio
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
"""Read once, as prometheus_client reads it when it is imported."""
RSS_SAMPLE_INTERVAL = 5.0
"""Seconds between samples of a worker's RSS (multiprocess mode only)."""

REGISTRY = CollectorRegistry()
if not MULTIPROCESS:
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
    "Bytes published and not yet confirmed (bounded by INGEST_MAX_INFLIGHT_BYTES per worker)",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
WORKER_RSS = Gauge(
    "lms_api_worker_resident_memory_bytes",
    "Resident memory of each lms api worker, sampled every few seconds (API_WORKERS > 1)",
    multiprocess_mode="liveall",
    registry=REGISTRY,
)

RETRY_LATER_STATUSES = frozenset({429, 503})


def record_response(endpoint: str, status: int) -> None:
    """Count one answered ingestion request."""
    INGEST_REQUESTS.labels(endpoint, f"{status // 100}xx").inc()
    if status in RETRY_LATER_STATUSES:
        INGEST_RETRY_LATER.labels(endpoint, str(status)).inc()


def inflight_changed(delta: int) -> None:
    """The publisher's bytes in flight grew or shrank by `delta` (kept exact, not sampled:
    a worker's value must be in the shared files when another worker is scraped)."""
    INFLIGHT_BYTES.inc(delta)


def exposed() -> CollectorRegistry:
    """What a scrape answers: this process's registry, or every worker's values."""
    if not MULTIPROCESS:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


async def sample_worker_rss() -> None:
    """Until cancelled, put this worker's RSS into WORKER_RSS (multiprocess mode), read by
    the process collector prometheus_client uses for process_resident_memory_bytes."""
    collector = ProcessCollector(registry=None)
    while True:
        for metric in collector.collect():
            if metric.name == "process_resident_memory_bytes":
                WORKER_RSS.set(metric.samples[0].value)
        await asyncio.sleep(RSS_SAMPLE_INTERVAL)


def worker_stopped() -> None:
    """Drop this worker's live gauges from the shared files, so they stop counting."""
    if MULTIPROCESS:
        mark_process_dead(os.getpid())
