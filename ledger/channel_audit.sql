-- Reconcile's view of batch-settlement (ledger/channel_audit.py): each channel's books beside what the contract
-- holds, the recorded claim and sweep transactions whose receipts are still to be read, and the findings about
-- channels and those transactions (reconcile_flags rows whose subject is a channel or a batch transaction, 0012).

-- name: channel_audit_books
-- The channels of network $1 after channel id $2 (paging), with what the ledger holds for each: the mirror,
-- what we charged (and refunded of it before any claim), what our recorded claims add up to, whether a claim of it is in flight (written ahead, not
-- resolved), and its latest voucher's payment (to tell a sale on a restarted devnet). A recorded claim's total
-- per channel is in the claim's write-ahead rows; the vouchers it moved to claimed_onchain (or on to settled)
-- bound it from below for a claim recorded without them.
WITH chosen AS (
    SELECT * FROM batch_channels WHERE network = $1 AND channel_id > $2 ORDER BY channel_id LIMIT $3
), claimed_rows AS (
    SELECT item ->> 0 AS channel_id, (item ->> 1)::numeric AS total_atomic, p.resolved_at IS NULL AS in_flight
    FROM batch_pending_tx p, jsonb_array_elements(p.rows -> 'claims') AS item
    WHERE p.network = $1 AND p.kind = 'claim' AND (p.outcome = 'recorded' OR p.resolved_at IS NULL)
), by_claims AS (
    SELECT channel_id, max(total_atomic) FILTER (WHERE NOT in_flight) AS recorded_atomic, bool_or(in_flight) AS in_flight
    FROM claimed_rows WHERE channel_id IN (SELECT channel_id FROM chosen)
    GROUP BY channel_id
), by_vouchers AS (
    SELECT v.channel_id,
           max(v.max_claimable_atomic) FILTER (WHERE pay.state IN ('claimed_onchain', 'settled')) AS claimed_max_atomic,
           -- sales refunded before their claim (0010): never claimed, the payer keeps that money in its channel
           COALESCE(sum(pay.amount_atomic) FILTER (WHERE pay.state = 'refunded'), 0) AS refunded_atomic,
           max(v.payment_id) AS last_payment_id
    FROM batch_vouchers v JOIN payments pay ON pay.id = v.payment_id
    WHERE v.channel_id IN (SELECT channel_id FROM chosen)
    GROUP BY v.channel_id
)
SELECT c.channel_id, c.network, c.token, c.payer, c.payer_authorizer, c.receiver, c.receiver_authorizer,
       c.withdraw_delay, c.salt, c.balance_atomic, c.claimed_atomic, c.charged_atomic,
       GREATEST(COALESCE(bc.recorded_atomic, 0), COALESCE(bv.claimed_max_atomic, 0)) AS recorded_claimed_atomic,
       COALESCE(bc.in_flight, false) AS claim_in_flight, bv.last_payment_id, COALESCE(bv.refunded_atomic, 0) AS refunded_atomic,
       c.withdraw_requested_at, c.withdrawal_amount_atomic, c.refund_nonce
FROM chosen c
     LEFT JOIN by_claims bc ON bc.channel_id = c.channel_id
     LEFT JOIN by_vouchers bv ON bv.channel_id = c.channel_id
ORDER BY c.channel_id;

-- name: channel_audit_transactions
-- Recorded claims and sweeps of network $1 whose receipts are still to be read (all of them with $2), oldest
-- first, $3 at most. One recorded on an instance of a local devnet that no longer runs (the epoch that had
-- started by then is not the network's latest) is left out: that chain is gone, its absence is a reset.
SELECT tx_hash, network, kind, receiver, token, amount_atomic, recorded_at
FROM (
    SELECT t.*,
           COALESCE((SELECT e.instance_id FROM chain_epochs e
                     WHERE e.network = t.network AND e.started_at <= t.recorded_at ORDER BY e.id DESC LIMIT 1)
                    <> (SELECT e.instance_id FROM chain_epochs e WHERE e.network = t.network ORDER BY e.id DESC LIMIT 1),
                    false) AS earlier_instance
    FROM batch_transactions t
    WHERE t.network = $1 AND ($2 OR NOT EXISTS (SELECT 1 FROM batch_tx_audits a WHERE a.tx_hash = t.tx_hash))
) recorded
WHERE NOT earlier_instance
ORDER BY recorded_at, tx_hash
LIMIT $3;

-- name: channel_audit_tx_checked
-- A recorded transaction's receipt agrees with the books: not read again (unless `--all`).
INSERT INTO batch_tx_audits (tx_hash, block) VALUES ($1, $2)
ON CONFLICT (tx_hash) DO UPDATE SET block = EXCLUDED.block, checked_at = now();

-- name: channel_flag_lock
-- As flag_lock, for a channel ($1) or a batch transaction ($2) finding of kind $3.
SELECT resolved_at IS NOT NULL AND closed_by IS NULL AS resolved
FROM reconcile_flags
WHERE (channel_id = $1 OR batch_tx_hash = $2) AND kind = $3
FOR UPDATE;

-- name: channel_flag_upsert_channel
-- As flag_upsert: one row per (channel, kind); seen again it takes the new detail and reopens, unless an
-- operator closed it.
INSERT INTO reconcile_flags (channel_id, network, kind, detail, tx_hash, amount_atomic) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (channel_id, kind) DO UPDATE
    SET detail = EXCLUDED.detail, tx_hash = COALESCE(EXCLUDED.tx_hash, reconcile_flags.tx_hash),
        amount_atomic = EXCLUDED.amount_atomic, last_seen_at = now(),
        resolved_at = CASE WHEN reconcile_flags.closed_by IS NULL THEN NULL ELSE reconcile_flags.resolved_at END,
        acknowledged_at = CASE WHEN reconcile_flags.closed_by IS NULL AND reconcile_flags.resolved_at IS NOT NULL
                               THEN NULL ELSE reconcile_flags.acknowledged_at END,
        acknowledged_by = CASE WHEN reconcile_flags.closed_by IS NULL AND reconcile_flags.resolved_at IS NOT NULL
                               THEN NULL ELSE reconcile_flags.acknowledged_by END
RETURNING (xmax = 0) AS inserted;

-- name: channel_flag_upsert_tx
-- As channel_flag_upsert_channel, for a recorded batch transaction; its hash is also the finding's tx_hash.
INSERT INTO reconcile_flags (batch_tx_hash, network, kind, detail, tx_hash, amount_atomic)
VALUES ($1, $2, $3, $4, $1, $5)
ON CONFLICT (batch_tx_hash, kind) DO UPDATE
    SET detail = EXCLUDED.detail, amount_atomic = EXCLUDED.amount_atomic, last_seen_at = now(),
        resolved_at = CASE WHEN reconcile_flags.closed_by IS NULL THEN NULL ELSE reconcile_flags.resolved_at END,
        acknowledged_at = CASE WHEN reconcile_flags.closed_by IS NULL AND reconcile_flags.resolved_at IS NOT NULL
                               THEN NULL ELSE reconcile_flags.acknowledged_at END,
        acknowledged_by = CASE WHEN reconcile_flags.closed_by IS NULL AND reconcile_flags.resolved_at IS NOT NULL
                               THEN NULL ELSE reconcile_flags.acknowledged_by END
RETURNING (xmax = 0) AS inserted;

-- name: channel_flags_resolve
-- The chain agrees again: a channel's ($1) or a transaction's ($2) open findings of the kinds $3 are resolved.
UPDATE reconcile_flags SET resolved_at = now()
WHERE (channel_id = $1 OR batch_tx_hash = $2) AND kind = ANY($3::text[]) AND resolved_at IS NULL;

-- name: channel_flags_open
-- Open findings about channels and batch transactions, oldest first.
SELECT id, channel_id, batch_tx_hash, network, kind, detail, tx_hash, amount_atomic, first_seen_at, last_seen_at
FROM reconcile_flags
WHERE payment_id IS NULL AND resolved_at IS NULL
ORDER BY first_seen_at, id
LIMIT $1;
