-- Accounts and refresh-token families. Times are Unix milliseconds.
CREATE TABLE users (
  id            TEXT PRIMARY KEY,
  username      TEXT NOT NULL,
  username_key  TEXT NOT NULL UNIQUE,   -- lowercased: uniqueness ignores case
  password_hash TEXT NOT NULL,
  role          TEXT NOT NULL CHECK (role IN ('user', 'admin')),
  created_at    INTEGER NOT NULL
);

-- One family per login; every rotation adds a token to it.
CREATE TABLE refresh_families (
  id         TEXT PRIMARY KEY,
  user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,          -- the newest token's expiry
  revoked_at INTEGER
);
CREATE INDEX refresh_families_expires_at ON refresh_families(expires_at);
CREATE INDEX refresh_families_user_id ON refresh_families(user_id);

-- Only the SHA-256 of a token is stored.
CREATE TABLE refresh_tokens (
  token_hash TEXT PRIMARY KEY,
  family_id  TEXT NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE,
  issued_at  INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at    INTEGER
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens(family_id);
