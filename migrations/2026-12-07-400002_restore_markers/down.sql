DROP TABLE restore_markers;
