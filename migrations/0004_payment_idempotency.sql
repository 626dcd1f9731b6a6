-- 0004: x402 `payment-identifier` — a client-supplied id that makes a paid retry idempotent.
-- The first request with an id inserts its row (response NULL) and, once its data is delivered and
-- settled, stores the response; a retry with the same id and payment gets that response back, with
-- no second claim and no second settlement. The same id with another payment is refused.
CREATE TABLE payment_idempotency (
    id           text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{16,128}$'),
    payment_key  text NOT NULL,
    transport    text NOT NULL,  -- what stored the response (http, mcp): it is replayed only there
    response     bytea,          -- NULL while the first attempt runs
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX payment_idempotency_expiry ON payment_idempotency (expires_at);
