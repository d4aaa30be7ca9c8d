-- GET /documents/{id}/result shows the first 500 characters of the
-- extracted text and its size; kept beside the text, so that answering it
-- never reads a text of megabytes. GET .../result/text reads the text in
-- pieces (incremental blob I/O), never whole.
ALTER TABLE results ADD COLUMN text_preview TEXT NOT NULL DEFAULT '';
ALTER TABLE results ADD COLUMN text_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE results SET text_preview = substr(text, 1, 500), text_bytes = length(CAST(text AS BLOB));
