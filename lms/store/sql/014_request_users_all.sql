-- Version 14: requests per (UTC day of the log's own timestamp, user) over all services, and
-- the last one's timestamp: the top users of GET /v1/analytics/requests without a service
-- filter (lms/query/requests.py; issue 16, p95 < 300 ms on 5,000,000 rows).
--
-- request_users_day (sql/011) is keyed by (day, service, user): a user who calls 40 services
-- has 40 rows a day, and ranking the users of a month grouped 347,721 rows into a temporary
-- table (4,924 users, 230-680 ms on the 5,000,000-row benchmark). Here a user has one row a
-- day (60,245 rows for the same month), grouped 7-9 times faster. A covering index
-- (user_id, day_start, count, last_seen) on request_users_day was tried instead and was 2-3
-- times slower than the temporary table on this server (MariaDB 10.11): it reads every day's
-- entries of every user, whatever the range. With a service filter the readers keep
-- request_users_day, whose rows are that service's already.
--
-- One row per key, as the tables of sql/011: each batch transaction adds the users of the
-- requests it really inserted (lms/store/request_rollup.py, the same sums as
-- request_users_day's with the service cut) by INSERT ... ON DUPLICATE KEY UPDATE, in key
-- order, after request_users_day. lms mon's user has UPDATE on it (deploy/mysql/lms-users.sh);
-- `lms retention` expires it by day with the logs (lms/store/retention.py).
--
-- The backfill sums request_users_day (each row a (day, service, user)), once: it inserts only
-- into an empty table, so a re-run after an interruption never counts twice. Run `lms
-- migrate` with lms mon stopped (as lms mon itself does at start-up).
-- Valid on MariaDB 10.6+ and MySQL 8. The runner splits on semicolons: none in comments.

CREATE TABLE IF NOT EXISTS request_users_all_day (
    day_start    DATE NOT NULL,
    user_id      VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,
    `count`      BIGINT UNSIGNED NOT NULL,
    last_seen    DATETIME(6) NOT NULL,
    PRIMARY KEY (day_start, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO request_users_all_day (day_start, user_id, `count`, last_seen)
SELECT day_start, user_id, SUM(`count`), MAX(last_seen)
FROM request_users_day
WHERE NOT EXISTS (SELECT 1 FROM request_users_all_day)
GROUP BY day_start, user_id;
