"""LMS, the Log Monitoring Server: structured logs from Pub/Sub into MySQL.

Pub/Sub delivers at least once; LMS stores idempotently (keyed by message id, counts derived
from the rows each transaction inserted), so each log is stored and counted once.
"""

__version__ = "0.1.0"
