-- Local mirror of AmoCRM leads. Lead names are compared exactly (binary
-- collation): AmoCRM allows many leads with one name, and "Заказ" is not "заказ".
CREATE TABLE leads (
    id                BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    amocrm_id         BIGINT       NULL,
    name              VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    price             BIGINT       NULL,
    status_id         BIGINT       NULL,
    pipeline_id       BIGINT       NULL,
    contact_id        BIGINT       NULL,
    -- The main contact's AmoCRM id, kept even while that contact is not mirrored yet.
    contact_amocrm_id BIGINT       NULL,
    sync_status       VARCHAR(16)  NOT NULL DEFAULT 'pending',
    sync_attempts     INT          NOT NULL DEFAULT 0,
    sync_error        VARCHAR(512) NULL,
    sync_lease_until  DATETIME(6)  NULL,
    amo_updated_at    BIGINT       NULL,
    deleted_at        DATETIME(6)  NULL,
    created_at        DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at        DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY uq_leads_amocrm_id (amocrm_id),
    KEY ix_leads_name_contact (name, contact_id),
    KEY ix_leads_contact_id (contact_id),
    KEY ix_leads_status_id (status_id),
    KEY ix_leads_sync_status (sync_status),
    CONSTRAINT fk_leads_contact FOREIGN KEY (contact_id) REFERENCES contacts (id) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
