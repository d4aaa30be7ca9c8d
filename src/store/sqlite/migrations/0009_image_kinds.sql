-- docflow: foreign-keys-off
-- Images (PNG, JPEG, TIFF) are documents too, read by OCR. SQLite cannot
-- change a CHECK constraint in place, so the table is rebuilt the way its
-- documentation prescribes (ALTER TABLE, "other kinds of schema changes"):
-- the runner turns foreign keys off around this migration, so dropping the
-- old table cascades to nothing, and checks them all before it commits.
CREATE TABLE documents_new (
  id              TEXT PRIMARY KEY,
  owner_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  filename        TEXT NOT NULL,
  title           TEXT,
  kind            TEXT NOT NULL CHECK (kind IN ('pdf', 'docx', 'png', 'jpeg', 'tiff')),
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
INSERT INTO documents_new
  SELECT id, owner_id, filename, title, kind, size_bytes, sha256, status, created_at, updated_at,
         attempts, started_at, finished_at, error_code, error_message, error_retryable
  FROM documents;
DROP TABLE documents;
ALTER TABLE documents_new RENAME TO documents;
CREATE INDEX documents_owner_created ON documents(owner_id, created_at DESC, id DESC);
CREATE INDEX documents_owner_status_created ON documents(owner_id, status, created_at DESC, id DESC);
CREATE INDEX documents_created ON documents(created_at DESC, id DESC);
CREATE INDEX documents_status_created ON documents(status, created_at DESC, id DESC);
