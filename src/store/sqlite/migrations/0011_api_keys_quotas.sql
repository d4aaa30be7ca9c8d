-- Machine clients and quotas. Times are Unix milliseconds.
--
-- API keys: only a keyed hash of a key is stored (auth/api_key.hpp).
-- Revoking deletes the row, so the next request with the key, to any
-- process, finds nothing.
CREATE TABLE api_keys (
  id           TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name         TEXT NOT NULL,
  prefix       TEXT NOT NULL,           -- "dfk_" and 8 characters, to tell keys apart in lists
  key_hash     TEXT NOT NULL UNIQUE,
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER,                 -- NULL: never
  last_used_at INTEGER                  -- written at most once a minute
);
CREATE INDEX api_keys_user_id ON api_keys(user_id, created_at);

-- Quotas: a user's own limits, NULL for the server's defaults
-- (DOCFLOW_QUOTA_BYTES, DOCFLOW_QUOTA_DOCUMENTS), -1 for none.
ALTER TABLE users ADD COLUMN quota_bytes INTEGER;
ALTER TABLE users ADD COLUMN quota_documents INTEGER;

-- What each user stores, kept by triggers on documents so that every
-- insert and delete counts, whichever code (or older docflow, during a
-- rolling upgrade) makes it. An upload's commit checks it against the
-- limits with its user's row held (store::database::insert_document).
-- A later migration that rebuilds documents (as 0009 did) drops these
-- triggers with the old table and must create them again.
CREATE TABLE user_usage (
  user_id   TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  bytes     INTEGER NOT NULL,
  documents INTEGER NOT NULL
);
INSERT INTO user_usage (user_id, bytes, documents)
  SELECT owner_id, sum(size_bytes), count(*) FROM documents GROUP BY owner_id;
CREATE TRIGGER documents_count_insert AFTER INSERT ON documents BEGIN
  INSERT INTO user_usage (user_id, bytes, documents) VALUES (NEW.owner_id, NEW.size_bytes, 1)
    ON CONFLICT (user_id) DO UPDATE SET bytes = bytes + excluded.bytes, documents = documents + 1;
END;
CREATE TRIGGER documents_count_delete AFTER DELETE ON documents BEGIN
  UPDATE user_usage SET bytes = bytes - OLD.size_bytes, documents = documents - 1 WHERE user_id = OLD.owner_id;
END;
