-- Reconcile findings as an operator works through them (acknowledge, close, with notes kept in
-- reconcile_flag_actions), and the devnet epochs reconcile reads to tell a reset chain from a loss.
-- A finding's state: closed once resolved (by reconcile or an operator), acknowledged once an
-- operator acknowledged it, else open.

-- name: findings_list
-- $1: a state or NULL for all; $3: one finding's id or NULL; oldest first; $2: how many. A finding's subject is
-- a payment, a batch channel or a recorded batch transaction (0012): the network and amount are the payment's,
-- or the finding's own.
SELECT * FROM (
    SELECT f.id, f.payment_id, f.kind, f.detail, f.tx_hash, f.first_seen_at, f.last_seen_at,
           CASE WHEN f.resolved_at IS NOT NULL THEN 'closed'
                WHEN f.acknowledged_at IS NOT NULL THEN 'acknowledged'
                ELSE 'open' END AS state,
           f.acknowledged_at, f.acknowledged_by, f.resolved_at AS closed_at, f.closed_by, f.note,
           COALESCE(pay.network, f.network) AS network, pay.state AS payment_state,
           COALESCE(pay.amount_atomic, f.amount_atomic) AS amount_atomic, f.channel_id, f.batch_tx_hash
    FROM reconcile_flags f LEFT JOIN payments pay ON pay.id = f.payment_id
) found
WHERE ($1::text IS NULL OR found.state = $1) AND ($3::bigint IS NULL OR found.id = $3)
ORDER BY found.id
LIMIT $2;

-- name: finding_lock
SELECT id, resolved_at FROM reconcile_flags WHERE id = $1 FOR UPDATE;

-- name: finding_acknowledge
UPDATE reconcile_flags SET acknowledged_at = now(), acknowledged_by = $2, note = $3 WHERE id = $1;

-- name: finding_close
-- closed_by set: reconcile seeing it again keeps it closed (flag_upsert).
UPDATE reconcile_flags SET resolved_at = now(), closed_by = $2, note = $3 WHERE id = $1;

-- name: finding_action_insert
INSERT INTO reconcile_flag_actions (flag_id, action, note, actor) VALUES ($1, $2, $3, $4);

-- name: finding_actions
SELECT action, note, actor, at FROM reconcile_flag_actions WHERE flag_id = $1 ORDER BY id;

-- name: epoch_lock
SELECT pg_advisory_xact_lock(hashtextextended('worldgate:chain_epochs', 0));

-- name: epoch_record
-- A new epoch for network $1 unless its latest epoch is already instance $2; it starts at the next
-- payment id. Returns the new epoch's id (no row: nothing changed).
INSERT INTO chain_epochs (network, instance_id, first_payment_id)
SELECT $1, $2, (SELECT COALESCE(max(id), 0) + 1 FROM payments)
WHERE NOT EXISTS (
    SELECT 1 FROM (SELECT instance_id FROM chain_epochs WHERE network = $1 ORDER BY id DESC LIMIT 1) latest
    WHERE latest.instance_id = $2
)
RETURNING id;

-- name: epochs_all
SELECT network, instance_id, first_payment_id FROM chain_epochs ORDER BY network, id;
