-- LMS schema, version 4: the indexes that pages are read along also hold the payload of short
-- logs, so a full-text search tests its words on index entries instead of reading rows.
--
-- A search without a FULLTEXT lookup (lms/query.py, the probe) walks the newest entries of
-- each severity along the index of the other filters, and before this had to read each
-- entry's row just to test its payload: ~5 us per row even in memory, ~100 us with a small
-- buffer pool, and ~5,000 rows of a service for 100 timeouts. short_payload is the payload
-- when it has at most 255 characters and NULL otherwise. It is VIRTUAL, so it takes no room
-- in the rows, only in these indexes. The probe tests its words on short_payload and reads
-- the row only for entries that match or whose payload is long.
-- 255 characters (1,020 bytes in utf8mb4) keep every key within InnoDB's 3,072 bytes and the
-- entries of common one-line logs small. Each DROP + ADD pair is in one ALTER, so no moment
-- exists without the index.

ALTER TABLE service_logs
    ADD COLUMN short_payload VARCHAR(255)
        GENERATED ALWAYS AS (IF(CHAR_LENGTH(payload) <= 255, payload, NULL)) VIRTUAL,
    DROP KEY ix_service_logs_service_severity_ts,
    ADD KEY ix_service_logs_service_severity_ts
        (service_name, severity, `timestamp`, id, short_payload),
    DROP KEY ix_service_logs_severity_ts,
    ADD KEY ix_service_logs_severity_ts (severity, `timestamp`, id, short_payload),
    DROP KEY ix_service_logs_resource_ts,
    ADD KEY ix_service_logs_resource_ts
        (resource_id, severity, `timestamp`, id, service_name, short_payload),
    DROP KEY ix_service_logs_commit_ts,
    ADD KEY ix_service_logs_commit_ts
        (`commit`, severity, `timestamp`, id, service_name, short_payload),
    DROP KEY ix_service_logs_parent_ts,
    ADD KEY ix_service_logs_parent_ts
        (parent_resource_id, severity, `timestamp`, id, service_name, short_payload);
