-- Version 5: rows are unique by an idempotency key instead of the Pub/Sub message id.
--
-- The key is the client's (a native log's `id`, an Elasticsearch `_id`, the content key of
-- OTLP and Loki; `key:` + it), else `<message id>@<publish time in microseconds>`: a message id
-- alone is not unique across emulator restarts (each numbers from 1 again), so a database that
-- outlives an emulator would drop new logs as duplicates. Rows stored before this migration
-- keep their message id as key, and so do messages published before it was applied (lms mon
-- reads its applied_at), so a redelivery across the upgrade is still recognised.

ALTER TABLE service_logs
    ADD COLUMN idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL
    AFTER message_id;

UPDATE service_logs SET idempotency_key = message_id WHERE idempotency_key IS NULL;

ALTER TABLE service_logs
    MODIFY idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    ADD UNIQUE KEY uq_service_logs_key (idempotency_key),
    DROP INDEX uq_service_logs_message_id,
    ADD KEY ix_service_logs_message_id (message_id);

ALTER TABLE rejected_messages
    ADD COLUMN idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL
    AFTER message_id;

UPDATE rejected_messages SET idempotency_key = message_id WHERE idempotency_key IS NULL;

ALTER TABLE rejected_messages
    MODIFY idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    ADD UNIQUE KEY uq_rejected_messages_key (idempotency_key),
    DROP INDEX uq_rejected_messages_message_id,
    ADD KEY ix_rejected_messages_message_id (message_id);
