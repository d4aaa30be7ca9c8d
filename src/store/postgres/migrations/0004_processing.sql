-- Processing (as store/sqlite/migrations/0004): the job queue (the
-- transactional outbox), results, the per-document event log behind
-- /events, and idempotency keys.
CREATE TABLE jobs (
  id               uuid PRIMARY KEY,
  document_id      uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  state            text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  attempts         integer NOT NULL DEFAULT 0,
  available_at     timestamptz NOT NULL,   -- queued: not before (backoff)
  lease_token      text,                   -- running: the current holder's token
  lease_expires_at timestamptz,            -- running: taken over after this
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL
);
-- At most one live job per document: the guard behind "never a second job".
CREATE UNIQUE INDEX jobs_one_live_per_document ON jobs(document_id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_queued ON jobs(available_at) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs(lease_expires_at) WHERE state = 'running';
-- Deleting a document finds its finished jobs through this (the cascade).
CREATE INDEX jobs_document_id ON jobs(document_id);

CREATE TABLE results (
  document_id      uuid PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
  pipeline_version text NOT NULL,
  started_at       timestamptz NOT NULL,
  completed_at     timestamptz NOT NULL,
  attempts         integer NOT NULL,
  summary          jsonb NOT NULL,         -- counts, language, keywords, metadata, ml
  -- The extracted text as bytes: read in byte ranges, and stored
  -- uncompressed out of line (EXTERNAL) so that a range reads only the
  -- pages that hold it, never the whole text.
  text             bytea NOT NULL
);
ALTER TABLE results ALTER COLUMN text SET STORAGE EXTERNAL;

CREATE TABLE document_events (
  document_id uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  seq         bigint NOT NULL,             -- 1, 2, ... per document: the SSE id
  status      text NOT NULL,
  at          timestamptz NOT NULL,
  error       jsonb,                       -- {code, message, retryable} or NULL
  -- The writing transaction: the change feed reads events by it, up to the
  -- oldest transaction still running, so an event committed late (under a
  -- lower number than one already seen) is never skipped.
  xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
  PRIMARY KEY (document_id, seq)
);
CREATE INDEX document_events_xid ON document_events(xid);

-- The document's last event number: the next event takes it + 1 in the
-- same UPDATE that changes the status, under that row's lock, so two
-- writers can never both compute max(seq) + 1.
ALTER TABLE documents ADD COLUMN last_event_seq bigint NOT NULL DEFAULT 0;

CREATE TABLE idempotency_keys (
  user_id      uuid NOT NULL,
  key          text NOT NULL,
  fingerprint  text NOT NULL,
  state        text NOT NULL CHECK (state IN ('in_flight', 'done')),
  status       integer,
  body         text,
  content_type text,
  location     text,                       -- the replayed Location header, if any
  created_at   timestamptz NOT NULL,
  expires_at   timestamptz NOT NULL,
  PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys(expires_at);
