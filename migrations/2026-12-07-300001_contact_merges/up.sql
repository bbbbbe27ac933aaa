-- A pending contact folded into the row that already mirrors its AmoCRM contact
-- (AmoCRM held that person under another phone). Its id was handed out (a 202's
-- Location), so it keeps answering with the surviving row, and its phone keeps
-- finding it.
CREATE TABLE contact_merges (
    contact_id  BIGINT      NOT NULL PRIMARY KEY,
    merged_into BIGINT      NOT NULL,
    -- Always E.164: the folded row's phone.
    phone       VARCHAR(32) NOT NULL,
    merged_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY ix_contact_merges_phone (phone),
    KEY ix_contact_merges_into (merged_into)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
