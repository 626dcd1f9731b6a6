-- batch-settlement's recovery (ledger/batch_recovery.py): the settler's transactions written ahead, and the
-- redelivery of a voucher sale whose answer never left.

-- name: batch_pending_insert
-- A claim or sweep's hash, before it is broadcast (a retried write of the same hash changes nothing). The rows
-- come as JSON text, whatever json codec the connection has.
INSERT INTO batch_pending_tx (tx_hash, network, kind, rows) VALUES ($1, $2, $3, $4::text::jsonb)
ON CONFLICT (tx_hash) DO NOTHING;

-- name: batch_pending_open
-- The unresolved transactions of a network: claims before sweeps (a sweep's amount is booked against the
-- claims before it), each kind oldest first.
SELECT tx_hash, network, kind, rows::text AS rows, created_at, now() - created_at AS age
FROM batch_pending_tx
WHERE network = $1 AND resolved_at IS NULL
ORDER BY kind = 'settle', created_at, tx_hash
LIMIT $2;

-- name: batch_pending_resolve
UPDATE batch_pending_tx SET resolved_at = now(), outcome = $2
WHERE tx_hash = $1 AND resolved_at IS NULL
RETURNING tx_hash;

-- name: batch_take_redelivery
-- Lease the redelivery of a voucher sale booked but never delivered: the same voucher (key and signature) for
-- the same resource and price, booked at least $5 seconds ago (its own request may still be answering), no
-- other retry serving it now. The lease lapses after $6 seconds if that retry dies. No row back: refuse.
UPDATE payments pay SET redelivery_until = now() + make_interval(secs => $6)
FROM batch_vouchers v, journal_entries je
WHERE pay.payment_key = $1 AND v.payment_id = pay.id AND lower(v.signature) = lower($2)
  AND pay.resource = $3 AND pay.amount_atomic = $4
  AND pay.state IN ('accepted', 'claimed_onchain', 'settled') AND pay.delivered_at IS NULL AND v.delivered_at IS NULL
  AND je.payment_id = pay.id AND je.kind = 'settlement' AND je.created_at <= now() - make_interval(secs => $5)
  AND (pay.redelivery_until IS NULL OR pay.redelivery_until < now())
RETURNING pay.id, pay.state;

-- name: batch_mark_delivered
-- Voucher sales whose answers were handed to their transports: never served again. Marked on the voucher's row,
-- not the payment's: an update of payments rewrites all its indexes, and this runs for every voucher.
UPDATE batch_vouchers SET delivered_at = now() WHERE payment_id = ANY($1::bigint[]) AND delivered_at IS NULL;
