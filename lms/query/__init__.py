"""The read side: filters and cursors, full-text search and its probe, SQL builders (a user's
requests in order among them), and the reader every front end (`lms api`, `lms logs`,
`lms stats`) shares."""
