-- The first 500 characters of the extracted text and its size, kept beside
-- the text (as store/sqlite/migrations/0006), so that GET .../result never
-- reads a text of megabytes. Bytes, like the text.
ALTER TABLE results ADD COLUMN text_preview bytea NOT NULL DEFAULT ''::bytea;
ALTER TABLE results ADD COLUMN text_bytes bigint NOT NULL DEFAULT 0;
-- No PostgreSQL database predates this version; for the record, what it
-- would do to rows written before it (texts there are UTF-8).
UPDATE results
   SET text_preview = convert_to(left(convert_from(text, 'UTF8'), 500), 'UTF8'),
       text_bytes = length(text);
