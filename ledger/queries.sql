-- Every statement the ledger runs, by name (loaded by ledger/sql.py). Amounts are numeric(78,0).

-- name: claim_payment
-- Claim a payment key before its request is served: insert it, or re-claim a key whose earlier claim
-- was released (nothing charged). No row back means another request holds or consumed the key.
INSERT INTO payments (payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route, resource,
                      stream, settlement_mode, state, valid_before)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'claimed', $12)
ON CONFLICT (payment_key) DO UPDATE
    SET state = 'claimed', claims = payments.claims + 1, route = EXCLUDED.route, resource = EXCLUDED.resource,
        stream = EXCLUDED.stream, settlement_mode = EXCLUDED.settlement_mode, error_reason = NULL
    WHERE payments.state = 'released'
RETURNING id;

-- name: payment_state_by_key
SELECT id, state, route, amount_atomic, tx_hash FROM payments WHERE payment_key = $1;

-- name: advance_payment
-- Move a payment along one edge of the state machine; no row back if it was not in the expected state.
UPDATE payments SET state = $3, error_reason = $4, tx_hash = COALESCE($5, tx_hash)
WHERE id = $1 AND state = $2
RETURNING id;

-- name: record_tx_hash
-- Write-ahead: the hash of a settlement transaction, stored before it is broadcast.
UPDATE payments SET tx_hash = $2 WHERE id = $1 AND state = 'settling' RETURNING id;

-- name: mark_settled
UPDATE payments SET state = 'settled', tx_hash = $2, gas_cost_atomic = $3, settled_at = now(), error_reason = NULL
WHERE id = $1 AND state = 'settling'
RETURNING id;

-- name: insert_journal_entry
INSERT INTO journal_entries (payment_id, kind, reverses, memo) VALUES ($1, $2, $3, $4) RETURNING id;

-- name: insert_journal_postings
INSERT INTO journal_postings (entry_id, account, asset, amount_atomic)
SELECT $1, account, asset, amount_atomic
FROM unnest($2::text[], $3::text[], $4::numeric[]) AS lines (account, asset, amount_atomic);

-- name: payment_by_id
SELECT id, payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route, resource, stream,
       settlement_mode, state, valid_before, tx_hash, gas_cost_atomic, error_reason, claims, created_at,
       updated_at, settled_at
FROM payments WHERE id = $1;

-- name: payment_events
SELECT from_state, to_state, reason, tx_hash, at FROM payment_events WHERE payment_id = $1 ORDER BY id;

-- name: journal_for_payment
SELECT e.id AS entry_id, e.kind, p.account, p.asset, p.amount_atomic
FROM journal_entries e JOIN journal_postings p ON p.entry_id = e.id
WHERE e.payment_id = $1
ORDER BY e.id, p.id;

-- name: report
-- Revenue and outcomes grouped by one whitelisted expression (ledger/reports.py substitutes
-- /*group*/); revenue is read from the journal (credits to revenue:* accounts), not from payments.
WITH revenue AS (
    SELECT e.payment_id, -sum(p.amount_atomic) AS amount_atomic
    FROM journal_entries e JOIN journal_postings p ON p.entry_id = e.id
    WHERE p.account LIKE 'revenue:%'
    GROUP BY e.payment_id
)
SELECT /*group*/ AS key,
       count(*) FILTER (WHERE pay.state = 'settled') AS settled,
       count(*) FILTER (WHERE pay.state = 'settling') AS pending,
       count(*) FILTER (WHERE pay.state = 'failed') AS failed,
       count(*) FILTER (WHERE pay.state IN ('released', 'expired')) AS released,
       count(*) FILTER (WHERE pay.state IN ('claimed', 'verified', 'served')) AS in_flight,
       COALESCE(sum(revenue.amount_atomic), 0) AS revenue_atomic,
       COALESCE(sum(pay.gas_cost_atomic), 0) AS gas_cost_atomic
FROM payments pay LEFT JOIN revenue ON revenue.payment_id = pay.id
WHERE COALESCE(pay.settled_at, pay.created_at) >= $1 AND COALESCE(pay.settled_at, pay.created_at) < $2
GROUP BY 1
ORDER BY 1;

-- name: advisory_lock
-- A cross-process mutex by name (e.g. one relayer key shared by several workers).
SELECT pg_advisory_lock(hashtextextended($1, 0));

-- name: advisory_unlock
SELECT pg_advisory_unlock(hashtextextended($1, 0));
