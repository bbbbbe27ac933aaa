DROP TABLE amo_tokens;
