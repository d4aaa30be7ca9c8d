-- Webhooks, as store/sqlite/migrations/0013: endpoints, the events written
-- in the transaction of the status change (the outbox), and the deliveries,
-- a queue of their own beside the jobs.
CREATE TABLE webhooks (
  id         uuid PRIMARY KEY,
  owner_id   uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  url        text NOT NULL,
  -- 1 document.uploaded, 2 document.completed, 4 document.failed
  events     integer NOT NULL CHECK (events BETWEEN 1 AND 7),
  secret     text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX webhooks_owner ON webhooks(owner_id, created_at);

CREATE TABLE webhook_events (
  id          uuid PRIMARY KEY,
  type        text NOT NULL CHECK (type IN ('document.uploaded', 'document.completed', 'document.failed')),
  owner_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  document_id uuid NOT NULL,           -- no reference: the event outlives its document
  status      text NOT NULL,
  error       jsonb,
  created_at  timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
  id               uuid PRIMARY KEY,
  webhook_id       uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
  event_id         uuid NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
  state            text NOT NULL CHECK (state IN ('pending', 'sending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  available_at     timestamptz NOT NULL,
  lease_token      text,
  lease_expires_at timestamptz,
  last_status      integer,
  last_error       text,
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  delivered_at     timestamptz
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(available_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_sending ON webhook_deliveries(lease_expires_at) WHERE state = 'sending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries(webhook_id, created_at, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries(event_id);
