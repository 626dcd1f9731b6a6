-- The operator's console: the admin audit log, the admin sessions seen, the payers seen lately, sales by
-- network and scheme, and the sales still waiting for their settlement.

-- name: audit_insert
INSERT INTO admin_audit (actor, action, target, detail) VALUES ($1, $2, $3, $4)
RETURNING id, at, actor, action, target, detail;

-- name: audit_list
-- Newest first, keyset-paged by id ($3: only ids below it); $1 an action, or a prefix of one ending in '.'.
SELECT id, at, actor, action, target, detail FROM admin_audit
WHERE ($1::text IS NULL OR action = $1 OR (right($1, 1) = '.' AND starts_with(action, $1)))
  AND ($2::text IS NULL OR actor = $2)
  AND ($3::bigint IS NULL OR id < $3)
ORDER BY id DESC
LIMIT $4;

-- name: session_seen
INSERT INTO admin_sessions (session, subject, via, client, expires_at) VALUES ($1, $2, $3, $4, to_timestamp($5))
ON CONFLICT (session) DO UPDATE SET last_seen_at = now(), client = EXCLUDED.client, via = EXCLUDED.via;

-- name: sessions_recent
-- Sessions seen within $1 seconds that have not expired, most recent first.
SELECT session, subject, via, client, first_seen_at, last_seen_at, expires_at FROM admin_sessions
WHERE last_seen_at > now() - make_interval(secs => $1) AND expires_at > now()
ORDER BY last_seen_at DESC
LIMIT 100;

-- name: sessions_prune
DELETE FROM admin_sessions WHERE expires_at < now() - interval '1 day';

-- name: payers_recent
-- Who paid (or tried to) within $1 seconds: per payer and network, how many payments, how much settled.
SELECT payer, network, count(*) AS payments,
       count(*) FILTER (WHERE state = 'settled') AS settled,
       COALESCE(sum(amount_atomic) FILTER (WHERE state = 'settled'), 0) AS settled_atomic,
       max(created_at) AS last_seen_at
FROM payments
WHERE created_at > now() - make_interval(secs => $1)
GROUP BY payer, network
ORDER BY max(created_at) DESC
LIMIT $2;

-- name: sales_by_network_scheme
-- Per network and scheme within [$1, $2): sales (the data left: served, or on its way to settled), revenue (the
-- settled amount) and unsettled value (served but not final yet: the exposure).
SELECT network, scheme_id,
       count(*) FILTER (WHERE state IN ('served', 'settling', 'settled', 'accepted', 'claimed_onchain')) AS sales,
       count(*) FILTER (WHERE state = 'settled') AS settled,
       COALESCE(sum(amount_atomic) FILTER (WHERE state = 'settled'), 0) AS revenue_atomic,
       COALESCE(sum(amount_atomic) FILTER (WHERE state IN ('served', 'settling', 'accepted', 'claimed_onchain')), 0)
           AS unsettled_atomic,
       count(*) FILTER (WHERE state IN ('failed', 'released', 'expired', 'refunded')) AS not_charged
FROM payments
WHERE created_at >= $1 AND created_at < $2
GROUP BY network, scheme_id
ORDER BY network, scheme_id;

-- name: settlement_pending
-- The sales whose settlement is not final, oldest first: what an operator watches until the chain confirms.
SELECT id, scheme_id, network, payer, amount_atomic, stream, resource, state, tx_hash, created_at, updated_at,
       EXTRACT(EPOCH FROM now() - updated_at)::float8 AS waiting_s
FROM payments
WHERE state IN ('served', 'settling', 'accepted', 'claimed_onchain')
ORDER BY updated_at, id
LIMIT $1;
