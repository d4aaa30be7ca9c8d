-- The attempts the login and registration throttles count (as
-- store/sqlite/migrations/0007), shared by every node. One row per key, not
-- per attempt: the conditional upsert that counts an attempt locks its key's
-- row, so concurrent attempts on one key, from any node, are counted one
-- after the other against the limit. No index on the times: the purge scans
-- this small table every ten minutes, and an index would be updated by
-- every attempt.
CREATE TABLE throttle_attempts (
  scope     text NOT NULL,           -- which throttle, which kind of key
  key       text NOT NULL,           -- a username key or a client address
  leaves_at timestamptz[] NOT NULL,  -- when each counted attempt leaves its window, soonest first
  PRIMARY KEY (scope, key)
);
