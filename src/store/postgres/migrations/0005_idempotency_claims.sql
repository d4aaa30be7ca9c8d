-- Each claim of an Idempotency-Key gets a token (as
-- store/sqlite/migrations/0005): only the request holding the claim can
-- record its answer or release it.
ALTER TABLE idempotency_keys ADD COLUMN claim text;
