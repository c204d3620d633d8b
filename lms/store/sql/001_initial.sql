-- LMS schema, version 1. Applied once by `lms migrate` (and at `lms mon` start-up).

CREATE TABLE IF NOT EXISTS service_logs (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    message_id   VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    batch_id     BIGINT UNSIGNED NOT NULL,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    payload      VARCHAR(2048) NOT NULL,
    severity     ENUM('debug', 'info', 'warn', 'error', 'fatal') NOT NULL,
    `timestamp`  DATETIME(6) NOT NULL,
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_service_logs_message_id (message_id),
    KEY ix_service_logs_batch (batch_id),
    KEY ix_service_logs_service_severity (service_name, severity)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS service_severity (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    service_name VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    severity     ENUM('debug', 'info', 'warn', 'error', 'fatal') NOT NULL,
    `count`      INT UNSIGNED NOT NULL,
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY ix_service_severity_service (service_name, severity, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS rejected_messages (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    message_id  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    reason      VARCHAR(32) NOT NULL,
    detail      VARCHAR(1024) NOT NULL,
    data        MEDIUMBLOB NOT NULL,
    data_size   INT UNSIGNED NOT NULL,
    received_at DATETIME(6) NOT NULL,
    created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_rejected_messages_message_id (message_id),
    KEY ix_rejected_messages_reason (reason)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
