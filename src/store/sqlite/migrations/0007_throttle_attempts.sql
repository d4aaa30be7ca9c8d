-- The attempts the login and registration throttles count, kept in the
-- database instead of each process's memory, so that every process sharing
-- it counts against one limit. One row per attempt: SQLite's single writer
-- makes the count and the insert of one transaction safe. Times are Unix
-- milliseconds.
CREATE TABLE throttle_attempts (
  scope     TEXT NOT NULL,     -- which throttle, which kind of key
  key       TEXT NOT NULL,     -- a username key or a client address
  leaves_at INTEGER NOT NULL   -- when the attempt leaves its window
);
CREATE INDEX throttle_attempts_key ON throttle_attempts(scope, key, leaves_at);
