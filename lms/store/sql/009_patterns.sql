-- LMS schema, version 9: message patterns (GET /v1/analytics/patterns, `lms patterns`).
--
-- lms/domain/patterns.py masks the variable parts of a payload into its template, and the
-- template's pattern_id is the first 8 bytes of its SHA-256: a pure function of the payload,
-- the same on every `lms mon` replica. The writer (lms/store/patterns.py) fills, in the batch
-- transaction:
--   service_logs.pattern_id  of each row. NULL for rows stored before this version (no
--                            backfill: masking is Python, not SQL, and a rewrite of the whole
--                            table at `lms migrate` would take hours on a large one), so
--                            pattern figures start with the logs stored after it.
--   ix_service_logs_pattern_ts  (pattern_id, severity, timestamp): a pattern's logs newest
--                            first, per severity like the other filter indexes (GET /v1/logs
--                            with `pattern`).
--   log_patterns             one row per template: the first batch that stores a log of it
--                            inserts it (INSERT IGNORE, so replicas racing agree), with the
--                            earliest timestamp among that batch's logs of it (first_seen,
--                            not that of an older log arriving later). No example log id:
--                            finding it would read the batch back (about a tenth of the
--                            write cost, bench/patterns.py), and readers show the newest log
--                            of the pattern in their range instead, through the index below.
--   pattern_counts           append-only like service_severity: one row per batch and
--                            (hour of the log's own timestamp, service, severity, pattern) with
--                            the number of rows that batch really inserted; readers SUM them.
--                            Only INSERTs, so `lms mon`'s user needs no UPDATE privilege.
--                            Its primary key is the only index (a batch writes one B-tree):
--                            a range of hours is read in key order, service and severity
--                            tested on the way; batch_id makes each batch's row its own.
-- Valid on MariaDB 10.6+ and MySQL 8. The runner splits on semicolons: none in comments.
-- Adding the column rebuilds service_logs once: run `lms migrate` in a quiet moment.

ALTER TABLE service_logs
    ADD COLUMN pattern_id BIGINT UNSIGNED NULL,
    ADD KEY ix_service_logs_pattern_ts (pattern_id, severity, `timestamp`);

CREATE TABLE IF NOT EXISTS log_patterns (
    pattern_id     BIGINT UNSIGNED NOT NULL,
    template       TEXT COLLATE utf8mb4_bin NOT NULL,
    first_seen     DATETIME(6) NOT NULL,
    created_at     DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (pattern_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS pattern_counts (
    bucket_start DATETIME NOT NULL,
    pattern_id   BIGINT UNSIGNED NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    severity     ENUM('debug', 'info', 'warn', 'error', 'fatal') NOT NULL,
    batch_id     BIGINT UNSIGNED NOT NULL,
    `count`      INT UNSIGNED NOT NULL,
    PRIMARY KEY (bucket_start, pattern_id, service_name, severity, batch_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
