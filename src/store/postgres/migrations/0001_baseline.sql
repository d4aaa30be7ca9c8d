-- Baseline: the schema bookkeeping (schema_migrations) is created by the
-- migrator itself; later migrations add the tables of each feature.
-- Versions match store/sqlite/migrations/ one for one.
SELECT 1;
