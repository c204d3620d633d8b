"""Running LMS in production: Prometheus metrics, the health server of `lms mon` and the
structlog set-up every command shares."""
