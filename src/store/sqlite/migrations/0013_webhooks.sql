-- Webhooks (docs/architecture.md, "Webhooks"): the endpoints users
-- register, the events written in the transaction of the status change
-- they report (the outbox), and one delivery per event and subscribed
-- endpoint: a queue of its own beside the jobs, claimed under leases.
-- Times are Unix milliseconds.
CREATE TABLE webhooks (
  id         TEXT PRIMARY KEY,
  owner_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  url        TEXT NOT NULL,
  -- The subscribed event types as bits: 1 document.uploaded,
  -- 2 document.completed, 4 document.failed.
  events     INTEGER NOT NULL CHECK (events BETWEEN 1 AND 7),
  -- Kept as given: the sender needs it to sign (docs/operations.md).
  secret     TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_owner ON webhooks(owner_id, created_at);

-- No reference to the document: an event outlives a deletion of its
-- document, and carries everything its body says.
CREATE TABLE webhook_events (
  id          TEXT PRIMARY KEY,
  type        TEXT NOT NULL CHECK (type IN ('document.uploaded', 'document.completed', 'document.failed')),
  owner_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  document_id TEXT NOT NULL,
  status      TEXT NOT NULL,
  error       TEXT,               -- JSON {code, message, retryable} or NULL
  created_at  INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
  id               TEXT PRIMARY KEY,
  webhook_id       TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
  event_id         TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
  state            TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'delivered', 'failed')),
  attempts         INTEGER NOT NULL DEFAULT 0,
  available_at     INTEGER NOT NULL,   -- pending: not before (backoff)
  lease_token      TEXT,               -- sending: the current sender's token
  lease_expires_at INTEGER,            -- sending: taken over after this
  last_status      INTEGER,            -- the HTTP status of the last attempt, if it got one
  last_error       TEXT,               -- why the last attempt failed without one
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  delivered_at     INTEGER
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(available_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_sending ON webhook_deliveries(lease_expires_at) WHERE state = 'sending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries(webhook_id, created_at, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries(event_id);
