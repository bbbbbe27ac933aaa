-- Instances calling AmoCRM for this integration, by heartbeat: each takes an equal
-- share of the integration's requests per second.
CREATE TABLE amo_senders (
    instance_id VARCHAR(64) NOT NULL PRIMARY KEY,
    seen_at     DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
