DROP TABLE amo_senders;
