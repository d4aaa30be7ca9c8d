-- Resumable uploads (tus): one row per upload between its requests. The
-- lock (lock_token, locked_until) lets one request at a time write to an
-- upload, whichever process it reaches; a request that dies holds it until
-- locked_until. Once the upload ended, answer_* is what every later request
-- about it gets. Times are Unix milliseconds.
CREATE TABLE uploads (
  id                  TEXT PRIMARY KEY,   -- also the Document's id and blob key once complete
  owner_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  length              INTEGER NOT NULL,
  received            INTEGER NOT NULL,  -- the offset: bytes durable in the blob store
  metadata            TEXT NOT NULL,
  idempotency_key     TEXT,
  fingerprint         TEXT NOT NULL,
  store_state         TEXT NOT NULL,
  hash_state          TEXT NOT NULL,
  created_at          INTEGER NOT NULL,
  expires_at          INTEGER NOT NULL,
  lock_token          TEXT,
  locked_until        INTEGER,
  answer_status       INTEGER NOT NULL DEFAULT 0,
  answer_body         TEXT NOT NULL DEFAULT '',
  answer_content_type TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX uploads_idempotency_key ON uploads(owner_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX uploads_expires_at ON uploads(expires_at);
