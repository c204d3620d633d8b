"""The analytics endpoints, under /v1/analytics: one module per kind of figure (patterns,
volume and errors)."""
