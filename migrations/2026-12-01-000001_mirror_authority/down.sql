DROP TABLE contact_duplicates;
DROP TABLE mirror_facts;
