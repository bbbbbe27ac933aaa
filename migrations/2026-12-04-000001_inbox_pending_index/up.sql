-- The worker claims the oldest pending rows (ORDER BY id). With (status, id) that is
-- a short range scan whatever the backlog; with (status, next_attempt_at) MariaDB
-- walked the primary key from the oldest processed row and locked every row it
-- passed, so each claim of a large backlog cost more than the one before.
ALTER TABLE webhook_inbox
    DROP KEY ix_webhook_inbox_due,
    ADD KEY ix_webhook_inbox_pending (status, id);
