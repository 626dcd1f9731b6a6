-- The operator's statements: payer bans, stream sharing, payment search and the settlement queue.
-- Changes to bans and sharing NOTIFY worldgate_admin (a trigger in 0002), so every worker reloads.

-- name: list_bans
-- The bans in force: one past its expiry binds no more (the row stays until lifted, for the record).
SELECT payer, reason, created_by, created_at, expires_at FROM payer_bans
WHERE expires_at IS NULL OR expires_at > now()
ORDER BY created_at, payer;

-- name: insert_ban
INSERT INTO payer_bans (payer, reason, created_by, expires_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (payer) DO UPDATE
SET reason = EXCLUDED.reason, created_by = EXCLUDED.created_by, created_at = now(), expires_at = EXCLUDED.expires_at
RETURNING payer, reason, created_by, created_at, expires_at;

-- name: delete_ban
DELETE FROM payer_bans WHERE payer = $1 RETURNING payer;

-- name: list_address_bans
SELECT address::text AS address, reason, created_by, created_at, expires_at FROM address_bans
WHERE expires_at IS NULL OR expires_at > now()
ORDER BY created_at, address;

-- name: insert_address_ban
INSERT INTO address_bans (address, reason, created_by, expires_at) VALUES ($1::text::cidr, $2, $3, $4)
ON CONFLICT (address) DO UPDATE
SET reason = EXCLUDED.reason, created_by = EXCLUDED.created_by, created_at = now(), expires_at = EXCLUDED.expires_at
RETURNING address::text AS address, reason, created_by, created_at, expires_at;

-- name: delete_address_ban
DELETE FROM address_bans WHERE address = $1::text::cidr RETURNING address::text;

-- name: list_sharing
SELECT stream_id, sharing, updated_by, updated_at FROM stream_sharing ORDER BY stream_id;

-- name: upsert_sharing
INSERT INTO stream_sharing (stream_id, sharing, updated_by) VALUES ($1, $2, $3)
ON CONFLICT (stream_id) DO UPDATE SET sharing = EXCLUDED.sharing, updated_by = EXCLUDED.updated_by, updated_at = now()
RETURNING stream_id, sharing, updated_by, updated_at;

-- name: search_payments
-- Newest first, keyset-paged by id ($9: only ids below it). Every filter is optional (NULL: any).
SELECT id, payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route, resource, stream, state, tx_hash,
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
  AND ($11::text IS NULL OR scheme_id = $11)
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
