-- API keys and quotas, as store/sqlite/migrations/0011.
CREATE TABLE api_keys (
  id           uuid PRIMARY KEY,
  user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name         text NOT NULL,
  prefix       text NOT NULL,
  key_hash     text NOT NULL UNIQUE,
  created_at   timestamptz NOT NULL,
  expires_at   timestamptz,
  last_used_at timestamptz
);
CREATE INDEX api_keys_user_id ON api_keys(user_id, created_at);

ALTER TABLE users ADD COLUMN quota_bytes bigint, ADD COLUMN quota_documents bigint;

CREATE TABLE user_usage (
  user_id   uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  bytes     bigint NOT NULL,
  documents bigint NOT NULL
);
INSERT INTO user_usage (user_id, bytes, documents)
  SELECT owner_id, sum(size_bytes), count(*) FROM documents GROUP BY owner_id;
CREATE FUNCTION docflow_count_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO user_usage (user_id, bytes, documents) VALUES (NEW.owner_id, NEW.size_bytes, 1)
      ON CONFLICT (user_id) DO UPDATE SET bytes = user_usage.bytes + excluded.bytes,
                                          documents = user_usage.documents + 1;
  ELSE
    UPDATE user_usage SET bytes = bytes - OLD.size_bytes, documents = documents - 1
      WHERE user_id = OLD.owner_id;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER documents_count_usage AFTER INSERT OR DELETE ON documents
  FOR EACH ROW EXECUTE FUNCTION docflow_count_usage();
