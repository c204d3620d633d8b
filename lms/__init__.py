"""LMS, the Log Monitoring Server: structured logs from Pub/Sub into MySQL, exactly once."""

__version__ = "0.1.0"
