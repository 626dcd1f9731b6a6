-- The operator's statements: payer bans, stream sharing, payment search and the settlement queue.
-- Changes to bans and sharing NOTIFY worldgate_admin (a trigger in 0002), so every worker reloads.

-- name: list_bans
SELECT payer, reason, created_by, created_at FROM payer_bans ORDER BY created_at, payer;

-- name: insert_ban
INSERT INTO payer_bans (payer, reason, created_by) VALUES ($1, $2, $3)
ON CONFLICT (payer) DO UPDATE SET reason = EXCLUDED.reason, created_by = EXCLUDED.created_by
RETURNING payer, reason, created_by, created_at;

-- name: delete_ban
DELETE FROM payer_bans WHERE payer = $1 RETURNING payer;

-- name: list_sharing
SELECT stream_id, sharing, updated_by, updated_at FROM stream_sharing ORDER BY stream_id;

-- name: upsert_sharing
INSERT INTO stream_sharing (stream_id, sharing, updated_by) VALUES ($1, $2, $3)
ON CONFLICT (stream_id) DO UPDATE SET sharing = EXCLUDED.sharing, updated_by = EXCLUDED.updated_by, updated_at = now()
RETURNING stream_id, sharing, updated_by, updated_at;

-- name: search_payments
-- Newest first, keyset-paged by id ($9: only ids below it). Every filter is optional (NULL: any).
SELECT id, payment_key, network, asset, payer, pay_to, amount_atomic, route, resource, stream, state, tx_hash,
       gas_cost_atomic, error_reason, claims, created_at, updated_at, settled_at
FROM payments
WHERE ($1::text IS NULL OR payer = $1)
  AND ($2::text IS NULL OR state = $2)
  AND ($3::text IS NULL OR network = $3)
  AND ($4::text IS NULL OR COALESCE(stream, resource) = $4)
  AND ($5::text IS NULL OR tx_hash = $5)
  AND ($6::timestamptz IS NULL OR created_at >= $6)
  AND ($7::timestamptz IS NULL OR created_at < $7)
  AND ($8::text IS NULL OR payment_key = $8)
  AND ($9::bigint IS NULL OR id < $9)
ORDER BY id DESC
LIMIT $10;

-- name: settlement_queue
-- What is not final yet, by state: how many, how much, and how long the oldest has waited.
SELECT state, count(*) AS payments, COALESCE(sum(amount_atomic), 0) AS amount_atomic,
       min(updated_at) AS oldest_updated_at
FROM payments
WHERE state IN ('claimed', 'verified', 'served', 'settling', 'accepted', 'claimed_onchain')
GROUP BY state
ORDER BY state;

-- name: exposure_by_network
-- Money whose data left (or is leaving) before its settlement is final: what we stand to lose, and how
-- long the oldest of it has waited (batch vouchers wait for their claim and sweep by design).
SELECT network, COALESCE(sum(amount_atomic), 0) AS amount_atomic,
       EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest_s
FROM payments WHERE state IN ('served', 'settling', 'accepted', 'claimed_onchain')
GROUP BY network;

-- name: open_flags_by_kind
SELECT kind, count(*) AS flags FROM reconcile_flags WHERE resolved_at IS NULL GROUP BY kind;

-- name: advisory_try_lock
-- The same named mutex as advisory_lock, without waiting: false if someone else holds it.
SELECT pg_try_advisory_lock(hashtextextended($1, 0));
