-- Version 15: logs per (commit, UTC hour of their own timestamp, service), one count per
-- severity, for the volume and error-rate analytics filtered by `commit` (lms/query/volume.py;
-- issues 16 and 17: the explorer's histogram of one commit).
--
-- Without it those counted service_logs along ix_service_logs_commit_ts, so a commit with
-- 100,000 logs read 100,000 index entries per answer. This table answers the whole hours of a
-- range, one row per (commit, hour, service); the partial hours at the ends are still counted
-- on service_logs, as for volume_rollup. Logs without a commit have no row.
--
-- One row per key: each batch transaction adds the counts of the rows it really inserted
-- (lms/store/volume_rollup.py, from the same counting as volume_rollup's) to its keys' rows by
-- INSERT ... ON DUPLICATE KEY UPDATE col = col + VALUES(col) (MariaDB and MySQL 8 both accept
-- it), in key order, so a redelivery or a second replica's copy adds nothing and a read sums one
-- row per key however many batches wrote it. lms mon's user has UPDATE on this table (and the
-- request rollups) only (deploy/mysql/lms-users.sh).
--
-- The primary key leads with the commit: a read is one commit over a range of hours, one range
-- of the clustered index. ix_commit_rollup_hour leads with the hour for `lms retention`, which
-- expires the rows with the logs' UTC days (lms/store/retention.py); it needs no compaction.
--
-- The backfill counts the rows stored before this migration, in one statement, along
-- ix_service_logs_commit_ts (it holds commit, severity, timestamp and service_name: no row is
-- read). It inserts only into an empty table, so a re-run after an interruption never counts
-- twice. Run `lms migrate` with lms mon stopped (as lms mon itself does at start-up): rows an
-- older lms mon commits while the backfill runs would not be counted.
-- Valid on MariaDB 10.6+ and MySQL 8. The runner splits on semicolons: none in comments.

CREATE TABLE IF NOT EXISTS commit_rollup (
    `commit`     VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,
    hour_start   DATETIME NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    `debug`      BIGINT UNSIGNED NOT NULL,
    `info`       BIGINT UNSIGNED NOT NULL,
    `warn`       BIGINT UNSIGNED NOT NULL,
    `error`      BIGINT UNSIGNED NOT NULL,
    `fatal`      BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (`commit`, hour_start, service_name),
    KEY ix_commit_rollup_hour (hour_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO commit_rollup (`commit`, hour_start, service_name,
    `debug`, `info`, `warn`, `error`, `fatal`)
SELECT `commit`, DATE_FORMAT(`timestamp`, '%Y-%m-%d %H:00:00'), service_name,
       SUM(severity = 'debug'), SUM(severity = 'info'), SUM(severity = 'warn'),
       SUM(severity = 'error'), SUM(severity = 'fatal')
FROM service_logs FORCE INDEX (ix_service_logs_commit_ts)
WHERE `commit` IS NOT NULL AND NOT EXISTS (SELECT 1 FROM commit_rollup)
GROUP BY `commit`, DATE_FORMAT(`timestamp`, '%Y-%m-%d %H:00:00'), service_name;
