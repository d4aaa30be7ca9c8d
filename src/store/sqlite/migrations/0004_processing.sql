-- Processing: the job queue (the transactional outbox), results, the
-- per-document event log behind /events, and idempotency keys.
-- Times are Unix milliseconds.
CREATE TABLE jobs (
  id               TEXT PRIMARY KEY,
  document_id      TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  attempts         INTEGER NOT NULL DEFAULT 0,
  available_at     INTEGER NOT NULL,   -- queued: not before (backoff)
  lease_token      TEXT,               -- running: the current holder's token
  lease_expires_at INTEGER,            -- running: taken over after this
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL
);
-- At most one live job per document: the guard behind "never a second job".
CREATE UNIQUE INDEX jobs_one_live_per_document ON jobs(document_id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_queued ON jobs(available_at) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs(lease_expires_at) WHERE state = 'running';

CREATE TABLE results (
  document_id      TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
  pipeline_version TEXT NOT NULL,
  started_at       INTEGER NOT NULL,
  completed_at     INTEGER NOT NULL,
  attempts         INTEGER NOT NULL,
  summary          TEXT NOT NULL,      -- JSON: counts, language, keywords, metadata, ml
  text             TEXT NOT NULL
);

CREATE TABLE document_events (
  document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,        -- 1, 2, ... per document: the SSE id
  status      TEXT NOT NULL,
  at          INTEGER NOT NULL,
  error       TEXT,                    -- JSON {code, message, retryable} or NULL
  PRIMARY KEY (document_id, seq)
);

CREATE TABLE idempotency_keys (
  user_id     TEXT NOT NULL,
  key         TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
  status      INTEGER,
  body        TEXT,
  content_type TEXT,
  location    TEXT,                    -- the replayed Location header, if any
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys(expires_at);
