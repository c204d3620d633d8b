"""`lms mon`, the ingest daemon: a source delivers messages, the pipeline batches and stores
them, and only then are they acknowledged. The supervisor starts and stops the parts in order."""
