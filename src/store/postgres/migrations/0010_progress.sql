-- Progress reports, as store/sqlite/migrations/0010: the document's current
-- stage, and progress events in the document's event log.
ALTER TABLE documents ADD COLUMN stage text;
ALTER TABLE document_events
  ADD COLUMN kind text NOT NULL DEFAULT 'status' CHECK (kind IN ('status', 'progress')),
  ADD COLUMN stage text,
  ADD COLUMN pages_done integer,
  ADD COLUMN pages_total integer;
