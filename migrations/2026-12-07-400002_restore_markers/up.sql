-- Left by scripts/restore.sh (or an operator after another kind of restore): the
-- database now holds a backup of `backup_taken_at`, behind AmoCRM. amosync acts on
-- each row once (handled_at) at start-up. IF NOT EXISTS: restore.sh creates the
-- table itself when it restores a dump taken before this migration.
CREATE TABLE IF NOT EXISTS restore_markers (
    id              BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    backup_taken_at DATETIME(6) NOT NULL,
    restored_at     DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    handled_at      DATETIME(6) NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
