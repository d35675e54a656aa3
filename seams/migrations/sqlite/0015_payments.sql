-- Payments through a provider (written by the catalog): a checkout the server opened,
-- then paid, refunded or disputed as the provider's signed events say; and the events
-- already applied, so one delivered twice changes nothing.
CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    course_id TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    amount_cents BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    payment_intent TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX payments_intent ON payments (payment_intent);
CREATE TABLE payment_events (
    id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
