-- Idempotency-Key: the first response to a client's key is kept for 24 hours and
-- replayed to repeats of the same request.
CREATE TABLE idempotency_keys (
    client_id       VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    idem_key        VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- SHA-256 of method, path and body: the same key with another request is an error.
    request_hash    CHAR(64)     CHARACTER SET ascii NOT NULL,
    -- in_progress while the first request runs, then done
    status          VARCHAR(16)  NOT NULL,
    response_status INT          NULL,
    content_type    VARCHAR(64)  NULL,
    location        VARCHAR(512) NULL,
    response_body   MEDIUMBLOB   NULL,
    started_at      DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    expires_at      DATETIME(6)  NOT NULL,
    PRIMARY KEY (client_id, idem_key),
    KEY ix_idempotency_keys_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
