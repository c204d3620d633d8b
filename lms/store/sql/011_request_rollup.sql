-- Version 11: HTTP requests per (UTC hour, and UTC day, of the log's own timestamp, service,
-- route, method), with their 4xx and 5xx counts, summed duration and a latency histogram, and
-- per (hour or day, service, user) the requests and the last one's timestamp: the request
-- analytics (lms/query/requests.py, GET /v1/analytics/requests).
--
-- A log is a request when its metadata.http has a status_code (a number with no fraction,
-- 100..599), a duration_ms (a number >= 0) and a non-empty route or else path; the rule is
-- lms/domain/requests.py's, which the writer applies (lms/store/request_rollup.py), and the
-- backfill below applies the same rule in SQL. A path stands for its route with its query
-- cut, every segment holding a digit as {id} and at most three segments. Trailing spaces are
-- cut from routes and methods: the key columns compare PAD SPACE, so `/x ` and `/x` must be
-- one key (else two rows of one batch would collide on the primary key).
--
-- One row per key: each batch transaction adds the sums of the rows it really inserted to
-- its keys' rows (INSERT ... ON DUPLICATE KEY UPDATE col = col + VALUES(col), which MariaDB
-- and MySQL 8 both accept), so a redelivery or a second replica's copy adds nothing and a
-- range reads one row per key and hour, however many batches wrote it. lms mon's user has
-- UPDATE on these four tables only (deploy/mysql/lms-users.sh). The primary keys are time
-- first: a range of hours is one range of the clustered index, and retention expires by it.
--
-- Two tiers: request_rollup per UTC hour and request_rollup_day per UTC day (the same sums,
-- upserted in the same transaction), so a long range reads its whole days from the day table
-- and only its partial edge hours from the hourly one; likewise request_users and
-- request_users_day. ix_request_rollup_route leads with the route key: the hourly series of
-- the top routes reads only their rows. The day table's sums are BIGINT (a day of one route
-- may pass 2^32 requests where an hour does not).
--
-- The latency histogram has 70 bins: b00 below 0.5 ms, b69 from 65536 ms on, bin i
-- in between from bound i-1 (inclusive) to bound i (exclusive), the bounds 2^(k/4) ms for
-- k = -4..64 rounded to the microsecond (LATENCY_BOUNDS):
-- 0.5, 0.595, 0.707, 0.841, 1, 1.189, 1.414, 1.682, 2, 2.378, 2.828, 3.364, 4, 4.757,
-- 5.657, 6.727, 8, 9.514, 11.314, 13.454, 16, 19.027, 22.627, 26.909, 32, 38.055, 45.255,
-- 53.817, 64, 76.109, 90.51, 107.635, 128, 152.219, 181.019, 215.269, 256, 304.437,
-- 362.039, 430.539, 512, 608.874, 724.077, 861.078, 1024, 1217.748, 1448.155, 1722.156,
-- 2048, 2435.496, 2896.309, 3444.312, 4096, 4870.992, 5792.619, 6888.623, 8192, 9741.985,
-- 11585.238, 13777.247, 16384, 19483.969, 23170.475, 27554.494, 32768, 38967.939,
-- 46340.95, 55108.987, 65536
-- A percentile read from it is within 9.1% of the exact one (lms/domain/requests.py).
--
-- The backfills count the rows stored before this migration, once: each inserts only into an
-- empty table, so a re-run after an interruption never counts twice. Run `lms migrate` with
-- lms mon stopped (as lms mon itself does at start-up).

CREATE TABLE IF NOT EXISTS request_rollup (
    hour_start   DATETIME NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    route        VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,
    method       VARCHAR(16) COLLATE utf8mb4_bin NOT NULL,
    `count`      INT UNSIGNED NOT NULL,
    count_4xx    INT UNSIGNED NOT NULL,
    count_5xx    INT UNSIGNED NOT NULL,
    sum_ms       DOUBLE NOT NULL,
    -- the latency histogram, b00 to b69
    b00 INT UNSIGNED NOT NULL, b01 INT UNSIGNED NOT NULL, b02 INT UNSIGNED NOT NULL,
    b03 INT UNSIGNED NOT NULL, b04 INT UNSIGNED NOT NULL, b05 INT UNSIGNED NOT NULL,
    b06 INT UNSIGNED NOT NULL, b07 INT UNSIGNED NOT NULL, b08 INT UNSIGNED NOT NULL,
    b09 INT UNSIGNED NOT NULL, b10 INT UNSIGNED NOT NULL, b11 INT UNSIGNED NOT NULL,
    b12 INT UNSIGNED NOT NULL, b13 INT UNSIGNED NOT NULL, b14 INT UNSIGNED NOT NULL,
    b15 INT UNSIGNED NOT NULL, b16 INT UNSIGNED NOT NULL, b17 INT UNSIGNED NOT NULL,
    b18 INT UNSIGNED NOT NULL, b19 INT UNSIGNED NOT NULL, b20 INT UNSIGNED NOT NULL,
    b21 INT UNSIGNED NOT NULL, b22 INT UNSIGNED NOT NULL, b23 INT UNSIGNED NOT NULL,
    b24 INT UNSIGNED NOT NULL, b25 INT UNSIGNED NOT NULL, b26 INT UNSIGNED NOT NULL,
    b27 INT UNSIGNED NOT NULL, b28 INT UNSIGNED NOT NULL, b29 INT UNSIGNED NOT NULL,
    b30 INT UNSIGNED NOT NULL, b31 INT UNSIGNED NOT NULL, b32 INT UNSIGNED NOT NULL,
    b33 INT UNSIGNED NOT NULL, b34 INT UNSIGNED NOT NULL, b35 INT UNSIGNED NOT NULL,
    b36 INT UNSIGNED NOT NULL, b37 INT UNSIGNED NOT NULL, b38 INT UNSIGNED NOT NULL,
    b39 INT UNSIGNED NOT NULL, b40 INT UNSIGNED NOT NULL, b41 INT UNSIGNED NOT NULL,
    b42 INT UNSIGNED NOT NULL, b43 INT UNSIGNED NOT NULL, b44 INT UNSIGNED NOT NULL,
    b45 INT UNSIGNED NOT NULL, b46 INT UNSIGNED NOT NULL, b47 INT UNSIGNED NOT NULL,
    b48 INT UNSIGNED NOT NULL, b49 INT UNSIGNED NOT NULL, b50 INT UNSIGNED NOT NULL,
    b51 INT UNSIGNED NOT NULL, b52 INT UNSIGNED NOT NULL, b53 INT UNSIGNED NOT NULL,
    b54 INT UNSIGNED NOT NULL, b55 INT UNSIGNED NOT NULL, b56 INT UNSIGNED NOT NULL,
    b57 INT UNSIGNED NOT NULL, b58 INT UNSIGNED NOT NULL, b59 INT UNSIGNED NOT NULL,
    b60 INT UNSIGNED NOT NULL, b61 INT UNSIGNED NOT NULL, b62 INT UNSIGNED NOT NULL,
    b63 INT UNSIGNED NOT NULL, b64 INT UNSIGNED NOT NULL, b65 INT UNSIGNED NOT NULL,
    b66 INT UNSIGNED NOT NULL, b67 INT UNSIGNED NOT NULL, b68 INT UNSIGNED NOT NULL,
    b69 INT UNSIGNED NOT NULL,
    PRIMARY KEY (hour_start, service_name, route, method),
    KEY ix_request_rollup_route (service_name, route, method, hour_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS request_rollup_day (
    day_start    DATE NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    route        VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,
    method       VARCHAR(16) COLLATE utf8mb4_bin NOT NULL,
    `count`      BIGINT UNSIGNED NOT NULL,
    count_4xx    BIGINT UNSIGNED NOT NULL,
    count_5xx    BIGINT UNSIGNED NOT NULL,
    sum_ms       DOUBLE NOT NULL,
    -- the latency histogram, b00 to b69
    b00 BIGINT UNSIGNED NOT NULL, b01 BIGINT UNSIGNED NOT NULL, b02 BIGINT UNSIGNED NOT NULL,
    b03 BIGINT UNSIGNED NOT NULL, b04 BIGINT UNSIGNED NOT NULL, b05 BIGINT UNSIGNED NOT NULL,
    b06 BIGINT UNSIGNED NOT NULL, b07 BIGINT UNSIGNED NOT NULL, b08 BIGINT UNSIGNED NOT NULL,
    b09 BIGINT UNSIGNED NOT NULL, b10 BIGINT UNSIGNED NOT NULL, b11 BIGINT UNSIGNED NOT NULL,
    b12 BIGINT UNSIGNED NOT NULL, b13 BIGINT UNSIGNED NOT NULL, b14 BIGINT UNSIGNED NOT NULL,
    b15 BIGINT UNSIGNED NOT NULL, b16 BIGINT UNSIGNED NOT NULL, b17 BIGINT UNSIGNED NOT NULL,
    b18 BIGINT UNSIGNED NOT NULL, b19 BIGINT UNSIGNED NOT NULL, b20 BIGINT UNSIGNED NOT NULL,
    b21 BIGINT UNSIGNED NOT NULL, b22 BIGINT UNSIGNED NOT NULL, b23 BIGINT UNSIGNED NOT NULL,
    b24 BIGINT UNSIGNED NOT NULL, b25 BIGINT UNSIGNED NOT NULL, b26 BIGINT UNSIGNED NOT NULL,
    b27 BIGINT UNSIGNED NOT NULL, b28 BIGINT UNSIGNED NOT NULL, b29 BIGINT UNSIGNED NOT NULL,
    b30 BIGINT UNSIGNED NOT NULL, b31 BIGINT UNSIGNED NOT NULL, b32 BIGINT UNSIGNED NOT NULL,
    b33 BIGINT UNSIGNED NOT NULL, b34 BIGINT UNSIGNED NOT NULL, b35 BIGINT UNSIGNED NOT NULL,
    b36 BIGINT UNSIGNED NOT NULL, b37 BIGINT UNSIGNED NOT NULL, b38 BIGINT UNSIGNED NOT NULL,
    b39 BIGINT UNSIGNED NOT NULL, b40 BIGINT UNSIGNED NOT NULL, b41 BIGINT UNSIGNED NOT NULL,
    b42 BIGINT UNSIGNED NOT NULL, b43 BIGINT UNSIGNED NOT NULL, b44 BIGINT UNSIGNED NOT NULL,
    b45 BIGINT UNSIGNED NOT NULL, b46 BIGINT UNSIGNED NOT NULL, b47 BIGINT UNSIGNED NOT NULL,
    b48 BIGINT UNSIGNED NOT NULL, b49 BIGINT UNSIGNED NOT NULL, b50 BIGINT UNSIGNED NOT NULL,
    b51 BIGINT UNSIGNED NOT NULL, b52 BIGINT UNSIGNED NOT NULL, b53 BIGINT UNSIGNED NOT NULL,
    b54 BIGINT UNSIGNED NOT NULL, b55 BIGINT UNSIGNED NOT NULL, b56 BIGINT UNSIGNED NOT NULL,
    b57 BIGINT UNSIGNED NOT NULL, b58 BIGINT UNSIGNED NOT NULL, b59 BIGINT UNSIGNED NOT NULL,
    b60 BIGINT UNSIGNED NOT NULL, b61 BIGINT UNSIGNED NOT NULL, b62 BIGINT UNSIGNED NOT NULL,
    b63 BIGINT UNSIGNED NOT NULL, b64 BIGINT UNSIGNED NOT NULL, b65 BIGINT UNSIGNED NOT NULL,
    b66 BIGINT UNSIGNED NOT NULL, b67 BIGINT UNSIGNED NOT NULL, b68 BIGINT UNSIGNED NOT NULL,
    b69 BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (day_start, service_name, route, method)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS request_users (
    hour_start   DATETIME NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    user_id      VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,
    `count`      INT UNSIGNED NOT NULL,
    last_seen    DATETIME(6) NOT NULL,
    PRIMARY KEY (hour_start, service_name, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS request_users_day (
    day_start    DATE NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    user_id      VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,
    `count`      BIGINT UNSIGNED NOT NULL,
    last_seen    DATETIME(6) NOT NULL,
    PRIMARY KEY (day_start, service_name, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO request_rollup (hour_start, service_name, route, method, `count`,
    count_4xx, count_5xx, sum_ms,
    b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, b15, b16,
    b17, b18, b19, b20, b21, b22, b23, b24, b25, b26, b27, b28, b29, b30, b31, b32, b33,
    b34, b35, b36, b37, b38, b39, b40, b41, b42, b43, b44, b45, b46, b47, b48, b49, b50,
    b51, b52, b53, b54, b55, b56, b57, b58, b59, b60, b61, b62, b63, b64, b65, b66, b67,
    b68, b69)
SELECT hour_start, service_name, route, method, COUNT(*),
       SUM(status BETWEEN 400 AND 499), SUM(status >= 500), SUM(duration),
       SUM(bin = 0), SUM(bin = 1), SUM(bin = 2), SUM(bin = 3), SUM(bin = 4), SUM(bin = 5),
       SUM(bin = 6), SUM(bin = 7), SUM(bin = 8), SUM(bin = 9), SUM(bin = 10), SUM(bin = 11),
       SUM(bin = 12), SUM(bin = 13), SUM(bin = 14), SUM(bin = 15), SUM(bin = 16), SUM(bin = 17),
       SUM(bin = 18), SUM(bin = 19), SUM(bin = 20), SUM(bin = 21), SUM(bin = 22), SUM(bin = 23),
       SUM(bin = 24), SUM(bin = 25), SUM(bin = 26), SUM(bin = 27), SUM(bin = 28), SUM(bin = 29),
       SUM(bin = 30), SUM(bin = 31), SUM(bin = 32), SUM(bin = 33), SUM(bin = 34), SUM(bin = 35),
       SUM(bin = 36), SUM(bin = 37), SUM(bin = 38), SUM(bin = 39), SUM(bin = 40), SUM(bin = 41),
       SUM(bin = 42), SUM(bin = 43), SUM(bin = 44), SUM(bin = 45), SUM(bin = 46), SUM(bin = 47),
       SUM(bin = 48), SUM(bin = 49), SUM(bin = 50), SUM(bin = 51), SUM(bin = 52), SUM(bin = 53),
       SUM(bin = 54), SUM(bin = 55), SUM(bin = 56), SUM(bin = 57), SUM(bin = 58), SUM(bin = 59),
       SUM(bin = 60), SUM(bin = 61), SUM(bin = 62), SUM(bin = 63), SUM(bin = 64), SUM(bin = 65),
       SUM(bin = 66), SUM(bin = 67), SUM(bin = 68), SUM(bin = 69)
FROM (
    SELECT DATE_FORMAT(`timestamp`, '%Y-%m-%d %H:00:00') AS hour_start, service_name, method,
           CASE WHEN CHAR_LENGTH(RTRIM(route)) > 0 THEN RTRIM(LEFT(route, 255))
                ELSE RTRIM(LEFT(SUBSTRING_INDEX(REGEXP_REPLACE(SUBSTRING_INDEX(path, '?', 1),
                          '/[^/]*[0-9][^/]*', '/{id}'), '/', 4), 255)) END AS route,
           status, duration,
           INTERVAL(duration,
               0.5, 0.595, 0.707, 0.841, 1, 1.189, 1.414, 1.682, 2, 2.378, 2.828,
               3.364, 4, 4.757, 5.657, 6.727, 8, 9.514, 11.314, 13.454, 16, 19.027,
               22.627, 26.909, 32, 38.055, 45.255, 53.817, 64, 76.109, 90.51, 107.635,
               128, 152.219, 181.019, 215.269, 256, 304.437, 362.039, 430.539, 512,
               608.874, 724.077, 861.078, 1024, 1217.748, 1448.155, 1722.156, 2048,
               2435.496, 2896.309, 3444.312, 4096, 4870.992, 5792.619, 6888.623, 8192,
               9741.985, 11585.238, 13777.247, 16384, 19483.969, 23170.475, 27554.494,
               32768, 38967.939, 46340.95, 55108.987, 65536) AS bin
    FROM (
        SELECT `timestamp`, service_name,
               JSON_TYPE(JSON_EXTRACT(metadata, '$.http.status_code')) AS status_type,
               JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.status_code')) + 0E0 AS status,
               JSON_TYPE(JSON_EXTRACT(metadata, '$.http.duration_ms')) AS duration_type,
               JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.duration_ms')) + 0E0 AS duration,
               CASE WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.http.route')) = 'STRING'
                    THEN JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.route')) COLLATE utf8mb4_bin
                    END AS route,
               CASE WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.http.path')) = 'STRING'
                    THEN JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.path')) COLLATE utf8mb4_bin
                    END AS path,
               CASE WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.http.method')) = 'STRING'
                    THEN RTRIM(LEFT(JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.method')), 16))
                         COLLATE utf8mb4_bin
               ELSE '' END AS method
        FROM service_logs
        WHERE metadata LIKE '%"http"%'
    ) AS r
    WHERE status_type IN ('INTEGER', 'UNSIGNED INTEGER', 'DOUBLE', 'DECIMAL')
      AND status = FLOOR(status) AND status BETWEEN 100 AND 599
      AND duration_type IN ('INTEGER', 'UNSIGNED INTEGER', 'DOUBLE', 'DECIMAL')
      AND duration >= 0
      AND (CHAR_LENGTH(RTRIM(route)) > 0 OR CHAR_LENGTH(path) > 0)
) AS q
WHERE NOT EXISTS (SELECT 1 FROM request_rollup)
GROUP BY hour_start, service_name, route, method;

-- The same rule as above, for the users of the requests: metadata.user_id, a string of
-- 1..255 characters or an integer as its digits (what the user_id column of 008 holds, read
-- from the JSON so that this file does not need 008).
INSERT INTO request_users (hour_start, service_name, user_id, `count`, last_seen)
SELECT DATE_FORMAT(`timestamp`, '%Y-%m-%d %H:00:00'), service_name, user_id, COUNT(*),
       MAX(`timestamp`)
FROM (
    SELECT `timestamp`, service_name,
           CASE WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.user_id'))
                     IN ('STRING', 'INTEGER', 'UNSIGNED INTEGER')
                THEN JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.user_id')) COLLATE utf8mb4_bin
                END AS user_id,
           JSON_TYPE(JSON_EXTRACT(metadata, '$.http.status_code')) AS status_type,
           JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.status_code')) + 0E0 AS status,
           JSON_TYPE(JSON_EXTRACT(metadata, '$.http.duration_ms')) AS duration_type,
           JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.duration_ms')) + 0E0 AS duration,
           CASE WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.http.route')) = 'STRING'
                THEN JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.route')) COLLATE utf8mb4_bin
                    END AS route,
           CASE WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.http.path')) = 'STRING'
                THEN JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.path')) COLLATE utf8mb4_bin
                    END AS path,
           CASE WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.http.method')) = 'STRING'
                THEN RTRIM(LEFT(JSON_UNQUOTE(JSON_EXTRACT(metadata, '$.http.method')), 16))
                         COLLATE utf8mb4_bin
               ELSE '' END AS method
    FROM service_logs
    WHERE metadata LIKE '%"http"%'
) AS r
WHERE status_type IN ('INTEGER', 'UNSIGNED INTEGER', 'DOUBLE', 'DECIMAL')
  AND status = FLOOR(status) AND status BETWEEN 100 AND 599
  AND duration_type IN ('INTEGER', 'UNSIGNED INTEGER', 'DOUBLE', 'DECIMAL')
  AND duration >= 0
  AND (CHAR_LENGTH(RTRIM(route)) > 0 OR CHAR_LENGTH(path) > 0)
  AND CHAR_LENGTH(user_id) BETWEEN 1 AND 255
  AND NOT EXISTS (SELECT 1 FROM request_users)
GROUP BY 1, service_name, user_id;

-- The day tiers, from the hourly rows just backfilled (each day is its 24 hours' sums).
INSERT INTO request_rollup_day (day_start, service_name, route, method, `count`, count_4xx,
    count_5xx, sum_ms,
    b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, b15, b16,
    b17, b18, b19, b20, b21, b22, b23, b24, b25, b26, b27, b28, b29, b30, b31, b32, b33,
    b34, b35, b36, b37, b38, b39, b40, b41, b42, b43, b44, b45, b46, b47, b48, b49, b50,
    b51, b52, b53, b54, b55, b56, b57, b58, b59, b60, b61, b62, b63, b64, b65, b66, b67,
    b68, b69)
SELECT DATE(hour_start), service_name, route, method, SUM(`count`), SUM(count_4xx),
       SUM(count_5xx), SUM(sum_ms),
       SUM(b00), SUM(b01), SUM(b02), SUM(b03), SUM(b04), SUM(b05), SUM(b06), SUM(b07),
       SUM(b08), SUM(b09), SUM(b10), SUM(b11), SUM(b12), SUM(b13), SUM(b14), SUM(b15),
       SUM(b16), SUM(b17), SUM(b18), SUM(b19), SUM(b20), SUM(b21), SUM(b22), SUM(b23),
       SUM(b24), SUM(b25), SUM(b26), SUM(b27), SUM(b28), SUM(b29), SUM(b30), SUM(b31),
       SUM(b32), SUM(b33), SUM(b34), SUM(b35), SUM(b36), SUM(b37), SUM(b38), SUM(b39),
       SUM(b40), SUM(b41), SUM(b42), SUM(b43), SUM(b44), SUM(b45), SUM(b46), SUM(b47),
       SUM(b48), SUM(b49), SUM(b50), SUM(b51), SUM(b52), SUM(b53), SUM(b54), SUM(b55),
       SUM(b56), SUM(b57), SUM(b58), SUM(b59), SUM(b60), SUM(b61), SUM(b62), SUM(b63),
       SUM(b64), SUM(b65), SUM(b66), SUM(b67), SUM(b68), SUM(b69)
FROM request_rollup
WHERE NOT EXISTS (SELECT 1 FROM request_rollup_day)
GROUP BY DATE(hour_start), service_name, route, method;

INSERT INTO request_users_day (day_start, service_name, user_id, `count`, last_seen)
SELECT DATE(hour_start), service_name, user_id, SUM(`count`), MAX(last_seen)
FROM request_users
WHERE NOT EXISTS (SELECT 1 FROM request_users_day)
GROUP BY DATE(hour_start), service_name, user_id;
