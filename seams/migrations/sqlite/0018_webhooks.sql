-- Owners' webhook endpoints and the deliveries to them (written by the catalog). A
-- delivery is recorded with the journal entry it carries, in the same transaction, and
-- sent from this table: an outbox, so nothing is lost to a restart or a dead receiver.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- The event types sent, comma-separated and wrapped in commas: ",lecture.ready,".
    event_types TEXT NOT NULL,
    secret TEXT NOT NULL,
    -- After a rotation the old secret also signs until previous_until.
    previous_secret TEXT,
    previous_until BIGINT,
    enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_owner ON webhook_endpoints (owner_id);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    -- pending | delivered | failed
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_status INTEGER,
    last_latency_ms INTEGER,
    last_response TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
