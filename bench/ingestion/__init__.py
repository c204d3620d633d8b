"""The HTTP ingestion benchmark (bench/ingest.py): wrk against `lms api`."""
