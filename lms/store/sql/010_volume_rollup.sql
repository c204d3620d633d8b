-- Version 10: logs per (hour of their own timestamp, service), one count per severity, for
-- the volume and error-rate analytics (lms/query/volume.py).
--
-- service_severity counts by batch commit time (created_at), which is not when the logs
-- happened. This rollup counts by the log's own `timestamp`, truncated to its UTC hour. Like
-- service_severity it is append-only: each batch transaction adds one row per (hour,
-- service) of the rows it really inserted (lms/store/volume_rollup.py), and readers SUM them,
-- so lms mon's user needs no UPDATE privilege and a redelivery adds nothing. The severities
-- are columns, not a key part: five times fewer rows to read for a whole month.
-- Both indexes cover the reads: all services (hour first), or some services.
-- The backfill counts the rows stored before this migration, in one statement. It inserts
-- only into an empty rollup, so a re-run after an interruption never counts twice.
-- Run `lms migrate` with lms mon stopped (as lms mon itself does at start-up): rows an older
-- lms mon commits while the backfill runs would not be counted.

CREATE TABLE IF NOT EXISTS volume_rollup (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    hour_start   DATETIME NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    `debug`      BIGINT UNSIGNED NOT NULL,
    `info`       BIGINT UNSIGNED NOT NULL,
    `warn`       BIGINT UNSIGNED NOT NULL,
    `error`      BIGINT UNSIGNED NOT NULL,
    `fatal`      BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id),
    KEY ix_volume_rollup_hour (hour_start, service_name, `debug`, `info`, `warn`, `error`, `fatal`),
    KEY ix_volume_rollup_service
        (service_name, hour_start, `debug`, `info`, `warn`, `error`, `fatal`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO volume_rollup (hour_start, service_name, `debug`, `info`, `warn`, `error`, `fatal`)
SELECT DATE_FORMAT(`timestamp`, '%Y-%m-%d %H:00:00'), service_name,
       SUM(severity = 'debug'), SUM(severity = 'info'), SUM(severity = 'warn'),
       SUM(severity = 'error'), SUM(severity = 'fatal')
FROM service_logs
WHERE NOT EXISTS (SELECT 1 FROM volume_rollup)
GROUP BY DATE_FORMAT(`timestamp`, '%Y-%m-%d %H:00:00'), service_name;
