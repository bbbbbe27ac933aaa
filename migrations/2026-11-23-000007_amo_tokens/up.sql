-- OAuth2 tokens of the AmoCRM integration (OAuth mode). One row; the refresh lease
-- serialises refreshes across instances, since AmoCRM refresh tokens are single-use.
CREATE TABLE amo_tokens (
    id               TINYINT      NOT NULL PRIMARY KEY,
    access_token     TEXT         NOT NULL,
    refresh_token    TEXT         NOT NULL,
    -- unix seconds
    expires_at       BIGINT       NOT NULL,
    needs_reauth     BOOLEAN      NOT NULL DEFAULT FALSE,
    last_error       VARCHAR(512) NULL,
    refreshing_until DATETIME(6)  NULL,
    updated_at       DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
