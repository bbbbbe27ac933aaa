-- Every AmoCRM webhook delivery is stored raw, in one INSERT, before it is
-- acknowledged; a background worker applies it to the mirror afterwards.
CREATE TABLE webhook_inbox (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    content_type    VARCHAR(128) NOT NULL,
    body            MEDIUMBLOB   NOT NULL,
    -- pending -> processed, or failed (retried with backoff until attempts run out)
    status          VARCHAR(16)  NOT NULL DEFAULT 'pending',
    attempts        INT          NOT NULL DEFAULT 0,
    last_error      VARCHAR(512) NULL,
    next_attempt_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    -- A worker owns the row until then; a crashed worker's rows are picked up again.
    leased_until    DATETIME(6)  NULL,
    received_at     DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    processed_at    DATETIME(6)  NULL,
    KEY ix_webhook_inbox_due (status, next_attempt_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Contacts that arrive from AmoCRM may have no phone at all.
ALTER TABLE contacts MODIFY phone VARCHAR(32) NULL;
