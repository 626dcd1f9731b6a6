-- Statements of the payment-identifier store (migrations 0004, 0011).

-- name: idempotency_drop_expired_id
DELETE FROM payment_idempotency WHERE id = $1 AND expires_at < now();

-- name: idempotency_insert
INSERT INTO payment_idempotency (id, payment_key, transport, fingerprint, expires_at)
VALUES ($1, $2, $3, $5, now() + make_interval(secs => $4))
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: idempotency_get
-- The id's row and what became of its payment (no claim yet: NULL state and payer).
SELECT i.payment_key, i.transport, i.fingerprint, i.response, i.completed_at, i.expires_at,
       p.state AS payment_state, p.payer
FROM payment_idempotency i LEFT JOIN payments p ON p.payment_key = i.payment_key
WHERE i.id = $1 AND i.expires_at >= now();

-- name: idempotency_complete
UPDATE payment_idempotency SET response = $2, completed_at = now() WHERE id = $1 AND response IS NULL RETURNING id;

-- name: idempotency_park
-- The first attempt ended with its settlement pending: completed, nothing stored. The id stays bound to
-- its payment (a new payment under it could charge the payer twice) until the outcome is known.
UPDATE payment_idempotency SET completed_at = now() WHERE id = $1 AND response IS NULL;

-- name: idempotency_abandon
DELETE FROM payment_idempotency WHERE id = $1 AND response IS NULL;

-- name: idempotency_free_uncharged
-- Free an id whose payment ended without a charge (failed, expired, released) and delivered nothing, so
-- that another payment may run under it. Bound to the payment seen, in one statement: never a charged one.
DELETE FROM payment_idempotency i
WHERE i.id = $1 AND i.payment_key = $2 AND i.response IS NULL
  AND EXISTS (
      SELECT 1 FROM payments p
      WHERE p.payment_key = i.payment_key AND p.state IN ('failed', 'expired', 'released')
  );

-- name: idempotency_purge
DELETE FROM payment_idempotency WHERE expires_at < now();
