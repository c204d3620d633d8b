-- Version 13: top patterns from rollups of one row per key, in four tiers, so that
-- GET /v1/analytics/patterns (lms/query/patterns.py) reads a month in milliseconds.
--
-- pattern_counts (version 9) was append-only: one row per batch and (hour, pattern, service,
-- severity), so it held about 0.7 rows a log when templates come from every service, and a
-- month's ranking summed millions of them. Its successors hold one row per key: each batch
-- transaction adds the counts of the rows it really inserted (lms/store/patterns.py: the
-- batch itself when every row was new, else read back by batch_id) with INSERT ... ON
-- DUPLICATE KEY UPDATE `count` = `count` + VALUES(`count`), valid on MariaDB and MySQL 8, as
-- the request rollups of version 11 do. lms mon's user has UPDATE on these four tables only
-- (deploy/mysql/lms-users.sh). The tiers, each with the same counts:
--   pattern_rollup              per (UTC hour, pattern, severity): no service, so a query
--                               without one reads ~1/48 of the rows (the seed draws templates
--                               independently of services). Time first: the ranking of a
--                               range's edge hours is one range of the clustered index;
--                               ix_pattern_rollup_pattern serves the hourly trend of the top
--                               patterns (their rows only), covering: a month's 7,200 rows
--                               read ~5x faster than through row lookups, for one more index
--                               write per upserted row of this tier (the smallest one).
--   pattern_rollup_day          per (UTC day, pattern, severity): a range's whole days.
--   pattern_service_rollup      per (service, UTC hour, pattern, severity), for queries of one
--                               service: service first, so one service's hours are one range;
--                               ix_pattern_service_rollup_pattern serves its trend and
--                               ix_pattern_service_rollup_hour lms retention's expiry.
--   pattern_service_rollup_day  per (service, UTC day, pattern, severity), likewise.
-- A reader takes a range's whole UTC days from a day tier, its other whole hours from an
-- hour tier and only the partial hours at its ends from service_logs. The day tiers' counts
-- are BIGINT (a day may pass 2^32 logs of a pattern where an hour does not).
--
-- pattern_counts stays, no longer written nor read: lms_migrate has no DROP privilege, and
-- lms retention expires its rows as they age (an administrator may DROP it after this).
-- The backfill sums it, once: it holds exactly the counts of the rows that have a pattern
-- (the same rule, retention kept it exact), and it is far narrower than service_logs. Each
-- statement inserts only into an empty table, so a re-run after an interruption never
-- counts twice. Run `lms migrate` with lms mon stopped (as lms mon itself does at start-up).
-- Valid on MariaDB 10.6+ and MySQL 8. The runner splits on semicolons: none in comments.

CREATE TABLE IF NOT EXISTS pattern_rollup (
    hour_start   DATETIME NOT NULL,
    pattern_id   BIGINT UNSIGNED NOT NULL,
    severity     ENUM('debug', 'info', 'warn', 'error', 'fatal') NOT NULL,
    `count`      INT UNSIGNED NOT NULL,
    PRIMARY KEY (hour_start, pattern_id, severity),
    KEY ix_pattern_rollup_pattern (pattern_id, hour_start, severity, `count`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS pattern_rollup_day (
    day_start    DATE NOT NULL,
    pattern_id   BIGINT UNSIGNED NOT NULL,
    severity     ENUM('debug', 'info', 'warn', 'error', 'fatal') NOT NULL,
    `count`      BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (day_start, pattern_id, severity)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS pattern_service_rollup (
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    hour_start   DATETIME NOT NULL,
    pattern_id   BIGINT UNSIGNED NOT NULL,
    severity     ENUM('debug', 'info', 'warn', 'error', 'fatal') NOT NULL,
    `count`      INT UNSIGNED NOT NULL,
    PRIMARY KEY (service_name, hour_start, pattern_id, severity),
    KEY ix_pattern_service_rollup_pattern (service_name, pattern_id, hour_start),
    KEY ix_pattern_service_rollup_hour (hour_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS pattern_service_rollup_day (
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    day_start    DATE NOT NULL,
    pattern_id   BIGINT UNSIGNED NOT NULL,
    severity     ENUM('debug', 'info', 'warn', 'error', 'fatal') NOT NULL,
    `count`      BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (service_name, day_start, pattern_id, severity),
    KEY ix_pattern_service_rollup_day_day (day_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Grouped in the order of pattern_counts' primary key: one pass, no temporary table.
INSERT INTO pattern_service_rollup (service_name, hour_start, pattern_id, severity, `count`)
SELECT service_name, bucket_start, pattern_id, severity, SUM(`count`)
FROM pattern_counts
WHERE NOT EXISTS (SELECT 1 FROM pattern_service_rollup)
GROUP BY bucket_start, pattern_id, service_name, severity;

-- The other tiers from the rows just backfilled (a day is its 24 hours, no service all of them).
INSERT INTO pattern_service_rollup_day (service_name, day_start, pattern_id, severity, `count`)
SELECT service_name, DATE(hour_start), pattern_id, severity, SUM(`count`)
FROM pattern_service_rollup
WHERE NOT EXISTS (SELECT 1 FROM pattern_service_rollup_day)
GROUP BY service_name, DATE(hour_start), pattern_id, severity;

INSERT INTO pattern_rollup (hour_start, pattern_id, severity, `count`)
SELECT hour_start, pattern_id, severity, SUM(`count`)
FROM pattern_service_rollup
WHERE NOT EXISTS (SELECT 1 FROM pattern_rollup)
GROUP BY hour_start, pattern_id, severity;

INSERT INTO pattern_rollup_day (day_start, pattern_id, severity, `count`)
SELECT DATE(hour_start), pattern_id, severity, SUM(`count`)
FROM pattern_rollup
WHERE NOT EXISTS (SELECT 1 FROM pattern_rollup_day)
GROUP BY DATE(hour_start), pattern_id, severity;
