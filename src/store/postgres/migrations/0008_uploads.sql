-- Resumable uploads (tus), as store/sqlite/migrations/0008: one row per
-- upload between its requests. The lock (lock_token, locked_until) lets one
-- request at a time write to an upload, whichever node it reaches (a
-- conditional UPDATE takes it); a request that dies holds it until
-- locked_until. Once the upload ended, answer_* is what every later request
-- about it gets.
CREATE TABLE uploads (
  id                  uuid PRIMARY KEY,   -- also the Document's id and blob key once complete
  owner_id            uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  length              bigint NOT NULL,
  received            bigint NOT NULL,    -- the offset: bytes durable in the blob store
  metadata            text NOT NULL,
  idempotency_key     text,
  fingerprint         text NOT NULL,
  store_state         text NOT NULL,
  hash_state          text NOT NULL,
  created_at          timestamptz NOT NULL,
  expires_at          timestamptz NOT NULL,
  lock_token          text,
  locked_until        timestamptz,
  answer_status       integer NOT NULL DEFAULT 0,
  answer_body         text NOT NULL DEFAULT '',
  answer_content_type text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX uploads_idempotency_key ON uploads(owner_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX uploads_expires_at ON uploads(expires_at);
