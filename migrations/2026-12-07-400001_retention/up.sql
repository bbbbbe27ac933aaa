-- Rows retention has deleted per table, kept across restarts for `amosync db stats`
-- (the /metrics counter starts at zero with each process).
CREATE TABLE retention_totals (
    table_name    VARCHAR(64) NOT NULL PRIMARY KEY,
    pruned        BIGINT      NOT NULL DEFAULT 0,
    last_pruned_at DATETIME(6) NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
