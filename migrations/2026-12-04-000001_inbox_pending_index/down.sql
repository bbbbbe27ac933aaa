ALTER TABLE webhook_inbox
    DROP KEY ix_webhook_inbox_pending,
    ADD KEY ix_webhook_inbox_due (status, next_attempt_at);
