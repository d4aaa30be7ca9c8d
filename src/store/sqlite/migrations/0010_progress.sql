-- Progress: while a document is PROCESSING, its worker reports the stage it
-- is in (and, for OCR, pages done of pages to read). The stage is kept on
-- the document for GET /documents/{id}, cleared by every status change; each
-- report is also an event of the document's stream, kind 'progress', under
-- the next seq like a status event, so /events carries it with the same
-- ids, resumption and wake-ups.
ALTER TABLE documents ADD COLUMN stage TEXT;
ALTER TABLE document_events ADD COLUMN kind TEXT NOT NULL DEFAULT 'status'
  CHECK (kind IN ('status', 'progress'));
ALTER TABLE document_events ADD COLUMN stage TEXT;
ALTER TABLE document_events ADD COLUMN pages_done INTEGER;
ALTER TABLE document_events ADD COLUMN pages_total INTEGER;
