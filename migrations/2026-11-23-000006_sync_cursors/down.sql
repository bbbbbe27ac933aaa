DROP TABLE sync_cursors;
