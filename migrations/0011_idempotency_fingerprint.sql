-- 0011: a payment-identifier is bound to the request it paid for. `fingerprint` is the SHA-256 (hex) of
-- what was asked and at what price: the method (or MCP tool), the route template and path, the query's
-- accepted parameters sorted, and the offer paid (scheme, network, amount, asset, payTo). The same id on a
-- request with another fingerprint is refused (409) before any charge. Rows written before this migration
-- have none and keep the old rule (bound to their payment and transport only).
ALTER TABLE payment_idempotency ADD COLUMN fingerprint text CHECK (fingerprint ~ '^[0-9a-f]{64}$');
