-- Version 6: a rejected message keeps a 16 KiB prefix of its body, its size and its SHA-256.
--
-- Before, rejected_messages.data kept up to 1 MiB of each body, so a batch of many large
-- rejected messages could take longer than DB_TIMEOUT to write and be retried forever. Now
-- the writer keeps the first 16 KiB (lms.store.writer.MAX_REJECTED_DATA) with data_size (the
-- original size) and data_sha256 (the hex SHA-256 of the whole body), enough to recognise a
-- message without keeping it all. Rows stored before keep their data; those whose body was
-- kept whole get its digest here, the others (bodies over 1 MiB) keep NULL.

ALTER TABLE rejected_messages
    ADD COLUMN data_sha256 CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL
    AFTER data_size;

UPDATE rejected_messages SET data_sha256 = SHA2(data, 256)
    WHERE data_sha256 IS NULL AND data_size = LENGTH(data);
