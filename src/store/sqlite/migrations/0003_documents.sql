-- Documents. Times are Unix milliseconds; the blob key is the id.
CREATE TABLE documents (
  id              TEXT PRIMARY KEY,
  owner_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  filename        TEXT NOT NULL,
  title           TEXT,
  kind            TEXT NOT NULL CHECK (kind IN ('pdf', 'docx')),
  size_bytes      INTEGER NOT NULL,
  sha256          TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('UPLOADED', 'PROCESSING', 'COMPLETED', 'FAILED')),
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  started_at      INTEGER,
  finished_at     INTEGER,
  error_code      TEXT,
  error_message   TEXT,
  error_retryable INTEGER
);
-- Keyset pagination, newest first: per owner, per owner and status, and for admins.
CREATE INDEX documents_owner_created ON documents(owner_id, created_at DESC, id DESC);
CREATE INDEX documents_owner_status_created ON documents(owner_id, status, created_at DESC, id DESC);
CREATE INDEX documents_created ON documents(created_at DESC, id DESC);
CREATE INDEX documents_status_created ON documents(status, created_at DESC, id DESC);
