-- The AmoCRM account's catalogue: custom fields of contacts, leads and companies,
-- lead pipelines with their statuses, and users. A refresh replaces each part whole,
-- in one transaction, so a reader sees either the old catalogue or the new one.
CREATE TABLE amo_custom_fields (
    -- contacts, leads or companies.
    entity      VARCHAR(16)  NOT NULL,
    id          BIGINT       NOT NULL,
    name        TEXT         NOT NULL,
    -- AmoCRM's type name (text, select, tracking_data, ...), kept as sent.
    field_type  VARCHAR(64)  NOT NULL,
    -- Only system fields and fields created with one have a code.
    code        VARCHAR(255) NULL,
    sort        BIGINT       NOT NULL DEFAULT 0,
    is_api_only BOOLEAN      NOT NULL DEFAULT FALSE,
    -- The options (enums) as a JSON array of {id, value, sort, code?}: always read
    -- and replaced together with their field, never looked up on their own.
    options     LONGTEXT     NOT NULL,
    PRIMARY KEY (entity, id),
    KEY ix_amo_custom_fields_code (entity, code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE amo_pipelines (
    id         BIGINT  NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    sort       BIGINT  NOT NULL DEFAULT 0,
    is_main    BOOLEAN NOT NULL DEFAULT FALSE,
    is_archive BOOLEAN NOT NULL DEFAULT FALSE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- 142 (won) and 143 (lost) exist in every pipeline: the key is the pair.
CREATE TABLE amo_statuses (
    pipeline_id BIGINT      NOT NULL,
    id          BIGINT      NOT NULL,
    name        TEXT        NOT NULL,
    sort        BIGINT      NOT NULL DEFAULT 0,
    color       VARCHAR(32) NULL,
    -- The pipeline's "Incoming leads" (unsorted) stage.
    is_incoming BOOLEAN     NOT NULL DEFAULT FALSE,
    PRIMARY KEY (pipeline_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE amo_users (
    id        BIGINT       NOT NULL PRIMARY KEY,
    name      TEXT         NOT NULL,
    email     VARCHAR(255) NULL,
    is_active BOOLEAN      NOT NULL DEFAULT TRUE,
    is_admin  BOOLEAN      NOT NULL DEFAULT FALSE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- When each part (fields, pipelines, users) was last replaced.
CREATE TABLE amo_catalogue_refreshes (
    part         VARCHAR(16) NOT NULL PRIMARY KEY,
    refreshed_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
