-- Where reconciliation (and the full import) stands: the AmoCRM change time up to
-- which records have been pulled. Leased, so one instance at a time walks a cursor.
CREATE TABLE sync_cursors (
    name         VARCHAR(64) NOT NULL PRIMARY KEY,
    position     BIGINT      NOT NULL DEFAULT 0,
    leased_until DATETIME(6) NULL,
    updated_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
