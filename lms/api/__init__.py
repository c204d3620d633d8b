"""`lms api`: the HTTP server, a FastAPI app with one router per area over the query layer."""
