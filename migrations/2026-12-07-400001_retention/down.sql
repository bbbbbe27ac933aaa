DROP TABLE retention_totals;
