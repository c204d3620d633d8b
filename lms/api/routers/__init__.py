"""One router per area of the API: logs, users (a user's requests), stats (counters), ingest
(native), health, metrics."""
