DELETE FROM contacts WHERE phone IS NULL;
ALTER TABLE contacts MODIFY phone VARCHAR(32) NOT NULL;
DROP TABLE webhook_inbox;
