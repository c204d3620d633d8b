"""The read side: filters and cursors, full-text search and its probe, SQL builders, and the
reader every front end (`lms api`, `lms logs`, `lms stats`) shares."""
