-- Facts that make the mirror authoritative (AMO_DEDUP=auto skips AmoCRM's phone
-- search while all hold), shared by every instance. Times are the database's.
--   full_import:    `amosync sync --full` finished (cleared when a new one starts)
--   webhook_active: our webhook was last seen in AmoCRM's list, enabled, with the events
--   reconciled:     the last reconciliation round that caught up with AmoCRM
CREATE TABLE mirror_facts (
    name        VARCHAR(32) NOT NULL PRIMARY KEY,
    recorded_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Pairs of AmoCRM contacts holding one phone, as reconciliation found them; a pair is
-- reported once. Lower AmoCRM id first. amosync never merges them itself.
CREATE TABLE contact_duplicates (
    first_amocrm_id  BIGINT      NOT NULL,
    second_amocrm_id BIGINT      NOT NULL,
    phone            VARCHAR(32) NOT NULL,
    detected_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (first_amocrm_id, second_amocrm_id),
    KEY ix_contact_duplicates_detected (detected_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
