-- Mirror of AmoCRM companies. AmoCRM posts company events under `contacts[...]`
-- with `[type]=company`; they live here so a company never shows as a contact and
-- its phone never matches a client's. Phones, emails, custom fields and tags come
-- later in tables of their own that point at `id`.
CREATE TABLE companies (
    id                  BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    amocrm_id           BIGINT       NOT NULL,
    name                VARCHAR(255) NOT NULL DEFAULT '',
    responsible_user_id BIGINT       NULL,
    -- AmoCRM's own change time (unix seconds), for last-write-wins.
    amo_updated_at      BIGINT       NULL,
    deleted_at          DATETIME(6)  NULL,
    created_at          DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at          DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY uq_companies_amocrm_id (amocrm_id),
    KEY ix_companies_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Records whose webhook carried no change time (`leads[status]` short form, ...):
-- applying such an event could overwrite newer data, so the record is read back from
-- AmoCRM instead, in batches. A row is queued in the transaction that marks its
-- delivery processed, and deleted once AmoCRM answered for it.
CREATE TABLE mirror_refetch (
    entity    VARCHAR(16) NOT NULL,
    amocrm_id BIGINT      NOT NULL,
    attempts  INT         NOT NULL DEFAULT 0,
    -- When the next try may start; a claim moves it past its lease.
    due_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    queued_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (entity, amocrm_id),
    KEY ix_mirror_refetch_due (entity, due_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
