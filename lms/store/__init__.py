"""The database: one way to connect, the error classes every part retries by, the schema's
numbered migrations (package data, so a wheel carries them) and the batch writer."""
