-- Version 12: what `lms retention` (lms/store/retention.py) needs to expire old rows in short
-- chunks, each found through an index that leads with its date.
--
-- service_logs (ix_service_logs_timestamp), volume_rollup (ix_volume_rollup_hour),
-- pattern_counts (its primary key) and service_severity (ix_service_severity_created and
-- ix_service_severity_service, for compaction and the oldest-first drain) have one already.
-- rejected_messages had none on received_at, so each chunk of its expiry would scan the table.
-- Daily PARTITION BY RANGE was weighed and not taken: docs/scaling.md, Retention.
-- Valid on MariaDB 10.6+ and MySQL 8. The runner splits on semicolons: none in comments.

ALTER TABLE rejected_messages ADD KEY ix_rejected_messages_received (received_at);
