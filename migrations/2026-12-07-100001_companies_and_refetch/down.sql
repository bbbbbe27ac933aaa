DROP TABLE mirror_refetch;
DROP TABLE companies;
