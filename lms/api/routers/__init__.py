"""One router per area of the API: logs, stats (counters), health."""
