-- Images (PNG, JPEG, TIFF) are documents too, read by OCR; as
-- store/sqlite/migrations/0009.
ALTER TABLE documents DROP CONSTRAINT documents_kind_check,
  ADD CONSTRAINT documents_kind_check CHECK (kind IN ('pdf', 'docx', 'png', 'jpeg', 'tiff'));
