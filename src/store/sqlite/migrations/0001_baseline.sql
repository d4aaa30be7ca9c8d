-- Baseline: the schema bookkeeping (schema_migrations) is created by the
-- migrator itself; later migrations add the tables of each feature.
SELECT 1;
