-- Accounts and refresh-token families (as store/sqlite/migrations/0002).
-- Ids are UUIDv7 (uuid: 16 bytes, not 36 characters, in every index);
-- times are timestamptz, written to the millisecond.
CREATE TABLE users (
  id            uuid PRIMARY KEY,
  username      text NOT NULL,
  username_key  text NOT NULL UNIQUE,   -- lowercased: uniqueness ignores case
  password_hash text NOT NULL,
  role          text NOT NULL CHECK (role IN ('user', 'admin')),
  created_at    timestamptz NOT NULL
);

-- One family per login; every rotation adds a token to it.
CREATE TABLE refresh_families (
  id         uuid PRIMARY KEY,
  user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,      -- the newest token's expiry
  revoked_at timestamptz
);
CREATE INDEX refresh_families_expires_at ON refresh_families(expires_at);
CREATE INDEX refresh_families_user_id ON refresh_families(user_id);

-- Only the SHA-256 of a token is stored (hex, as the interface passes it).
CREATE TABLE refresh_tokens (
  token_hash text PRIMARY KEY,
  family_id  uuid NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE,
  issued_at  timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at    timestamptz
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens(family_id);
