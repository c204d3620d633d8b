-- LMS schema, version 2: tracing context on each log, and the indexes of the read side.
--
-- Applied to existing databases with ALTER TABLE only (no data is lost). The new columns are
-- nullable, so rows stored before this migration simply have no context. On a big existing
-- table each ALTER rebuilds or scans service_logs once: run `lms migrate` in a quiet moment.
--
-- Works on MariaDB 10.6+ (where JSON is LONGTEXT with a json_valid CHECK) and MySQL 8.
-- The runner splits on semicolons and drops comment lines, so no semicolon in comments.
--
-- Index plan (every index costs inserts, so one per filter kind and no more).
-- Pages are read newest first, ORDER BY timestamp DESC, id DESC, with a keyset cursor. The
-- indexes of the filters are (column, severity, timestamp): InnoDB appends the primary key
-- (id), so each holds (timestamp, id) in order for one (value, severity), and lms/query.py
-- reads one branch per severity and merges them, reading index entries only until the page
-- is known. Severity is in every such index because it is the commonest second filter.
--   ix_service_logs_timestamp            the full-text probe (see lms/query.py)
--   ix_service_logs_severity_ts          no filter, severity, from/to
--   ix_service_logs_service_severity_ts  service (replaces the (service_name, severity)
--                                        index of version 1, a prefix of it)
--   ix_service_logs_resource_ts          resource_id
--   ix_service_logs_commit_ts            commit
--   ix_service_logs_parent_ts            metadata.parentResourceId (a generated column)
--   ix_service_logs_trace                trace_id (a trace has few rows, sorted after)
--   ix_service_logs_span                 span_id
--   ft_service_logs_payload              q, full-text search over the payload
-- service_severity gets an index on created_at for GET /v1/severity time ranges.

ALTER TABLE service_logs
    ADD COLUMN resource_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD COLUMN trace_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD COLUMN span_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD COLUMN `commit` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD COLUMN metadata JSON NULL,
    ADD COLUMN parent_resource_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
        GENERATED ALWAYS AS (
            CASE WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.parentResourceId')) = 'STRING'
                 THEN JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.parentResourceId')) END
        ) STORED,
    DROP KEY ix_service_logs_service_severity,
    ADD KEY ix_service_logs_service_severity_ts (service_name, severity, `timestamp`),
    ADD KEY ix_service_logs_timestamp (`timestamp`),
    ADD KEY ix_service_logs_severity_ts (severity, `timestamp`),
    ADD KEY ix_service_logs_resource_ts (resource_id, severity, `timestamp`),
    ADD KEY ix_service_logs_trace (trace_id),
    ADD KEY ix_service_logs_span (span_id),
    ADD KEY ix_service_logs_commit_ts (`commit`, severity, `timestamp`),
    ADD KEY ix_service_logs_parent_ts (parent_resource_id, severity, `timestamp`);

ALTER TABLE service_severity ADD KEY ix_service_severity_created (created_at);

-- InnoDB builds one FULLTEXT index per statement (and adds its hidden FTS_DOC_ID column).
ALTER TABLE service_logs ADD FULLTEXT KEY ft_service_logs_payload (payload);
