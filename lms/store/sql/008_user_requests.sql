-- LMS schema, version 8: each user's requests, in the order they were made.
--
-- The request-logging middleware of lms_client puts the user's id in metadata.user_id, the
-- server instance (host:pid) in metadata.instance and a per-instance monotonic counter in
-- metadata.seq. Three STORED generated columns take them out of the JSON, like
-- parent_resource_id (version 2), and one index holds a user's logs in request order:
--   ix_service_logs_user_requests  (user_id, timestamp, request_instance, request_seq), and
--                                  InnoDB appends id. GET /v1/users/{user_id}/requests reads
--                                  it forwards, so its order needs no sort, and GET /v1/logs
--                                  finds a user's logs through its user_id prefix.
--
-- Each value is taken only when it is what the edge rules of lms/domain/record.py allow, and
-- is NULL otherwise (the log stays, its metadata too, it is just not indexed):
--   user_id           a JSON string of at most 255 characters, or a JSON integer (as its
--                     digits, so the user 42 and the user "42" are one user)
--   request_instance  a JSON string of at most 255 characters
--   request_seq       a JSON integer of 1 to 18 digits, without sign
-- The guards matter for rows stored before this migration, which no edge rule checked: a
-- value too long for its column, or an integer beyond BIGINT, would make the strict-mode
-- ALTER (and every later INSERT of such a log) fail, so the CASE never reaches the CAST for
-- them. MariaDB calls every JSON number without a fraction INTEGER (even 1e3), MySQL has
-- UNSIGNED INTEGER for those beyond BIGINT: the digit patterns make both agree.
--
-- Works on MariaDB 10.6+ (where JSON is LONGTEXT with a json_valid CHECK) and MySQL 8.
-- The runner splits on semicolons and drops comment lines, so no semicolon in comments.
-- Adding STORED columns rebuilds service_logs once: run `lms migrate` in a quiet moment.

ALTER TABLE service_logs
    ADD COLUMN user_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
        GENERATED ALWAYS AS (
            CASE
                WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.user_id')) = 'STRING'
                     AND CHAR_LENGTH(JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.user_id'))) <= 255
                THEN JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.user_id'))
                WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.user_id'))
                         IN ('INTEGER', 'UNSIGNED INTEGER')
                     AND JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.user_id'))
                         REGEXP '^-?[0-9]{1,20}$'
                THEN JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.user_id'))
            END
        ) STORED,
    ADD COLUMN request_instance VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
        GENERATED ALWAYS AS (
            CASE
                WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.instance')) = 'STRING'
                     AND CHAR_LENGTH(JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.instance'))) <= 255
                THEN JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.instance'))
            END
        ) STORED,
    ADD COLUMN request_seq BIGINT UNSIGNED
        GENERATED ALWAYS AS (
            CASE
                WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.seq')) IN ('INTEGER', 'UNSIGNED INTEGER')
                     AND JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.seq')) REGEXP '^[0-9]{1,18}$'
                THEN CAST(JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.seq')) AS UNSIGNED)
            END
        ) STORED,
    ADD KEY ix_service_logs_user_requests (user_id, `timestamp`, request_instance, request_seq);
