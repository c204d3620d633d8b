"""The analytics endpoints under /v1/analytics, one module each (patterns, ...)."""
