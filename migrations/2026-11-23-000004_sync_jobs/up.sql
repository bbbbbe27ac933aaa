-- The outbox: one job per local record that still has to reach AmoCRM. It is
-- written in the same transaction as the record, so an accepted submission
-- always has someone to finish it.
CREATE TABLE sync_jobs (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    entity          VARCHAR(16)  NOT NULL,
    record_id       BIGINT       NOT NULL,
    -- pending -> done, or dead after too many attempts (kept, and re-queueable)
    status          VARCHAR(16)  NOT NULL DEFAULT 'pending',
    attempts        INT          NOT NULL DEFAULT 0,
    last_error      VARCHAR(512) NULL,
    next_attempt_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    -- A worker owns the job until then (no transaction is held across AmoCRM calls).
    leased_until    DATETIME(6)  NULL,
    created_at      DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at      DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY uq_sync_jobs_record (entity, record_id),
    KEY ix_sync_jobs_due (status, next_attempt_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Rows accepted before the outbox existed get their job now.
INSERT INTO sync_jobs (entity, record_id)
SELECT 'contact', id FROM contacts WHERE sync_status = 'pending' AND deleted_at IS NULL;
INSERT INTO sync_jobs (entity, record_id)
SELECT 'lead', id FROM leads WHERE sync_status = 'pending' AND deleted_at IS NULL;
