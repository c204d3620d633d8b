"""Prometheus metrics of `lms mon`: base units, `_total` counters, no per-service labels."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_RECEIVED = Counter("lms_messages_received", "Messages pulled from Pub/Sub")
MESSAGES_ACKED = Counter("lms_messages_acked", "Messages acknowledged after their batch committed")
MESSAGES_NACKED = Counter(
    "lms_messages_nacked", "Messages handed back to Pub/Sub for redelivery (not committed)"
)
LOGS_STORED = Counter("lms_logs_stored", "Log rows newly stored in service_logs", ["severity"])
MESSAGES_DUPLICATE = Counter(
    "lms_messages_duplicate", "Redelivered messages that were already stored"
)
MESSAGES_REJECTED = Counter(
    "lms_messages_rejected", "Invalid messages stored in rejected_messages", ["reason"]
)
BATCHES_FLUSHED = Counter("lms_batches_flushed", "Committed batches", ["trigger"])
BATCH_SIZE = Histogram(
    "lms_batch_size_messages",
    "Messages per committed batch",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000),
)
FLUSH_DURATION = Histogram(
    "lms_flush_duration_seconds",
    "From the start of a flush to its commit, retries included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DB_ERRORS = Counter("lms_db_errors", "Failed or timed-out database transactions")
BUFFERED = Gauge("lms_buffered_messages", "Messages in the flusher's buffer")
OUTSTANDING = Gauge("lms_outstanding_messages", "Messages received and not yet acked or nacked")
OUTSTANDING_BYTES = Gauge(
    "lms_outstanding_bytes", "Bytes of the messages received and not yet acked or nacked"
)
LAST_COMMIT = Gauge(
    "lms_last_commit_timestamp_seconds",
    "Unix time of the last batch commit (of start-up until the first commit)",
)
COMMIT_LAG = Gauge(
    "lms_commit_lag_seconds",
    "Commit time of the last batch minus the publish time of its oldest message: how far"
    " behind the publishers the store was at that commit",
)
PUBLISH_TO_COMMIT = Histogram(
    "lms_publish_to_commit_seconds",
    "Commit time minus Pub/Sub publish time, per message",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
# Configuration, so alert rules can use it: "no commit for 5 x FLUSHINTERVAL" needs the interval.
FLUSH_INTERVAL = Gauge("lms_flush_interval_seconds", "FLUSHINTERVAL: the partial-batch timer")
MAX_OUTSTANDING = Gauge(
    "lms_max_outstanding_messages", "MAX_OUTSTANDING: the bound on received-but-unacked messages"
)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """`histogram.observe(value)` for each value (of a histogram without labels), as one
    increment per bucket and one of the sum: the flusher observes every message of a batch,
    and a lock and a walk of the bounds per message cost more than a bisect per message.

    Reads prometheus_client's own fields (pinned in constraints.txt); tests/test_observability
    checks the exposition matches observe() per value."""
    bounds = histogram._upper_bounds
    for index, count in Tally(bisect_left(bounds, value) for value in values).items():
        if index < len(bounds):  # as observe: a value above every bound (NaN) is in none
            histogram._buckets[index].inc(count)
    histogram._sum.inc(sum(values))
