-- Local mirror of AmoCRM contacts. A row exists before its AmoCRM twin does
-- (sync_status = 'pending'), so an accepted submission is never lost.
CREATE TABLE contacts (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    amocrm_id        BIGINT       NULL,
    name             VARCHAR(255) NOT NULL,
    -- Always E.164; deduplication compares this column only.
    phone            VARCHAR(32)  NOT NULL,
    sync_status      VARCHAR(16)  NOT NULL DEFAULT 'pending',
    sync_attempts    INT          NOT NULL DEFAULT 0,
    sync_error       VARCHAR(512) NULL,
    -- Who may talk to AmoCRM for this row until when (set from the DB clock).
    sync_lease_until DATETIME(6)  NULL,
    -- AmoCRM's own change time (unix seconds), for last-write-wins on webhooks.
    amo_updated_at   BIGINT       NULL,
    deleted_at       DATETIME(6)  NULL,
    created_at       DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at       DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY uq_contacts_amocrm_id (amocrm_id),
    KEY ix_contacts_phone (phone),
    KEY ix_contacts_name (name),
    KEY ix_contacts_sync_status (sync_status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
