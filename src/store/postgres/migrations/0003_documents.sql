-- Documents (as store/sqlite/migrations/0003). The blob key is the id.
CREATE TABLE documents (
  id              uuid PRIMARY KEY,
  owner_id        uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  filename        text NOT NULL,
  title           text,
  kind            text NOT NULL CHECK (kind IN ('pdf', 'docx')),
  size_bytes      bigint NOT NULL,
  sha256          text NOT NULL,
  status          text NOT NULL CHECK (status IN ('UPLOADED', 'PROCESSING', 'COMPLETED', 'FAILED')),
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  started_at      timestamptz,
  finished_at     timestamptz,
  error_code      text,
  error_message   text,
  error_retryable boolean
);
-- Keyset pagination, newest first: per owner, per owner and status, and for admins.
CREATE INDEX documents_owner_created ON documents(owner_id, created_at DESC, id DESC);
CREATE INDEX documents_owner_status_created ON documents(owner_id, status, created_at DESC, id DESC);
CREATE INDEX documents_created ON documents(created_at DESC, id DESC);
CREATE INDEX documents_status_created ON documents(status, created_at DESC, id DESC);
