DROP TABLE amo_catalogue_refreshes;
DROP TABLE amo_users;
DROP TABLE amo_statuses;
DROP TABLE amo_pipelines;
DROP TABLE amo_custom_fields;
