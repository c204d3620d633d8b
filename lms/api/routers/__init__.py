"""One router per area of the API: logs, stats (counters), ingest (native), health, metrics."""
