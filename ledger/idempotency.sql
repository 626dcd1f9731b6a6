-- Statements of the payment-identifier store (migration 0004).

-- name: idempotency_drop_expired_id
DELETE FROM payment_idempotency WHERE id = $1 AND expires_at < now();

-- name: idempotency_insert
INSERT INTO payment_idempotency (id, payment_key, transport, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: idempotency_get
SELECT payment_key, transport, response, expires_at FROM payment_idempotency WHERE id = $1 AND expires_at >= now();

-- name: idempotency_complete
UPDATE payment_idempotency SET response = $2, completed_at = now() WHERE id = $1 AND response IS NULL RETURNING id;

-- name: idempotency_abandon
DELETE FROM payment_idempotency WHERE id = $1 AND response IS NULL;

-- name: idempotency_purge
DELETE FROM payment_idempotency WHERE expires_at < now();
