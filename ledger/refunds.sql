-- Refunds (ledger/refunds.py, migration 0010): an operator's refund of one sale, a batch payer's cooperative
-- refund of its unspent deposit, and the checks `ledger verify` runs over them (ledger/refund_verify.py).

-- name: refund_sale_target
-- The sale to refund, and its voucher's channel when it is a batch sale (read before any lock: the channel's
-- row lock comes first, then the payment's, as record_claim takes them).
SELECT pay.id, pay.state, pay.network, pay.asset, pay.payer, pay.pay_to, pay.amount_atomic, v.channel_id
FROM payments pay LEFT JOIN batch_vouchers v ON v.payment_id = pay.id
WHERE pay.id = $1;

-- name: refund_lock_payment
SELECT state, amount_atomic FROM payments WHERE id = $1 FOR UPDATE;

-- name: refund_of_payment
SELECT * FROM payment_refunds WHERE payment_id = $1;

-- name: refund_settlement_revenue
-- The sale's settlement entry and its revenue postings: what a refund reverses.
SELECT e.id AS entry_id, p.account, p.asset, p.amount_atomic
FROM journal_entries e JOIN journal_postings p ON p.entry_id = e.id
WHERE e.payment_id = $1 AND e.kind = 'settlement' AND p.account LIKE 'revenue:%'
ORDER BY p.id;

-- name: refund_voucher_unclaimed
-- An accepted voucher sale refunded before its claim: never collected.
UPDATE payments SET state = 'refunded', error_reason = $2 WHERE id = $1 AND state = 'accepted'
RETURNING id;

-- name: refund_channel_unclaimed
-- Its channel's claims are that much lower from now on, and that much less is owed unswept.
UPDATE batch_channels
SET refunded_atomic = refunded_atomic + $2, unsettled_atomic = unsettled_atomic - $2
WHERE channel_id = $1
RETURNING receiver, token;

-- name: refund_insert
INSERT INTO payment_refunds (payment_id, kind, amount_atomic, account, asset, entry_id, reason, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: refunds_recent
-- Operator refunds, newest first ($2: only those of this payment, if given), with the transfer that paid one owed.
SELECT r.*, pay.network, pay.payer, pay.scheme_id, pay.state, t.tx_hash AS sent_tx, t.created_at AS sent_at
FROM payment_refunds r JOIN payments pay ON pay.id = r.payment_id LEFT JOIN refund_transfers t ON t.refund_id = r.id
WHERE $2::bigint IS NULL OR r.payment_id = $2
ORDER BY r.id DESC
LIMIT $1;

-- ---------------------------------------------------------------------------------------------
-- the operator's transfer of a refund owed (migration 0017)
-- ---------------------------------------------------------------------------------------------

-- name: refund_transfer_target
-- A refund, what its sale's payment says of where the money is, and the transfer that paid it, if any.
SELECT r.id, r.payment_id, r.kind, r.amount_atomic, r.account, r.asset, pay.network, pay.payer, pay.pay_to,
       pay.asset AS token, t.tx_hash AS sent_tx
FROM payment_refunds r JOIN payments pay ON pay.id = r.payment_id LEFT JOIN refund_transfers t ON t.refund_id = r.id
WHERE r.id = $1;

-- name: refund_transfer_lock
-- The refund's row, locked so that two operators recording transfers for it book one (the row never changes).
SELECT id FROM payment_refunds WHERE id = $1 FOR UPDATE;

-- name: refund_transfer_of_refund
SELECT * FROM refund_transfers WHERE refund_id = $1;

-- name: refund_transfer_of_tx
SELECT refund_id FROM refund_transfers WHERE network = $1 AND tx_hash = $2;

-- name: refund_transfer_insert
INSERT INTO refund_transfers (refund_id, network, tx_hash, sender, amount_atomic, entry_id, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- ---------------------------------------------------------------------------------------------
-- cooperative refunds
-- ---------------------------------------------------------------------------------------------

-- name: coop_refund_channel
-- The channel locked for a refund, with its refunded total. NO KEY UPDATE: it conflicts with the FOR UPDATE every
-- voucher booking and claim takes (they wait), but not with the key share a row referencing the channel takes
-- (the refund's own write-ahead in batch_refunds, on another connection, must not wait for it).
SELECT * FROM batch_channels WHERE channel_id = $1 FOR NO KEY UPDATE;

-- name: coop_refund_mirror
-- The chain's state of the channel, read just now under its lock (the claimed total is left to record_claim, so
-- that the claim it records books what the claim moved).
UPDATE batch_channels
SET balance_atomic = $2, refund_nonce = GREATEST(refund_nonce, $3), withdraw_requested_at = $4,
    withdrawal_amount_atomic = $5, mirrored_at = now()
WHERE channel_id = $1;

-- name: coop_refund_write_ahead
-- A cooperative refund's hash, before it is broadcast (a retried write of the same hash changes nothing).
INSERT INTO batch_refunds (tx_hash, channel_id, network, payer, requested_atomic, claim_atomic, refund_nonce)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tx_hash) DO NOTHING;

-- name: coop_refund_resolve
UPDATE batch_refunds
SET outcome = $2, refunded_atomic = $3, balance_after_atomic = $4, gas_cost_atomic = $5, resolved_at = now()
WHERE tx_hash = $1 AND resolved_at IS NULL
RETURNING tx_hash, claim_atomic;

-- name: coop_refunds_open
-- A channel's cooperative refunds still unresolved (a receipt not yet read), oldest first.
SELECT * FROM batch_refunds WHERE channel_id = $1 AND resolved_at IS NULL ORDER BY created_at, tx_hash;

-- name: coop_refunds_of_channel
SELECT * FROM batch_refunds WHERE channel_id = $1 ORDER BY created_at, tx_hash;

-- ---------------------------------------------------------------------------------------------
-- verify (ledger/refund_verify.py): one set-based statement per check, at most $1 violations, `total` counts all.
-- ---------------------------------------------------------------------------------------------

-- name: verify_refund_counts
SELECT (SELECT count(*) FROM payment_refunds) AS refunds, (SELECT count(*) FROM batch_refunds) AS coop_refunds,
       (SELECT count(*) FROM refund_transfers) AS refund_transfers;

-- name: verify_refunded_sales
-- The settlement entries of voucher sales refunded before their claim that book exactly their sale's revenue:
-- verify_booked_entries lists them (their payment is no longer accepted); refund_entry checks them instead.
SELECT count(*) AS excused FROM (
    SELECT e.id
    FROM journal_entries e
         JOIN payments pay ON pay.id = e.payment_id
         JOIN batch_vouchers v ON v.payment_id = pay.id
         LEFT JOIN journal_postings p ON p.entry_id = e.id
    WHERE e.kind = 'settlement' AND pay.state = 'refunded'
    GROUP BY e.id, pay.amount_atomic
    HAVING -COALESCE(sum(p.amount_atomic) FILTER (WHERE p.account LIKE 'revenue:%'), 0) = pay.amount_atomic
) refunded;

-- name: verify_refund_entries
-- Each refund has its reversal: of the sale's settlement entry, for the same payment, debiting revenue by the
-- refunded amount and crediting the refund's account by it, and nothing else; a voucher refunded before its claim
-- is `refunded` and credits its receiver's receivable, any other refund is a payable of a sale whose money we
-- hold (settled, or claimed on chain); a refunded sale has no other reversal, and every `refunded` payment has its
-- refund. (A reversal of a sale without a refund row is a correction made by hand: not this check's.)
WITH refunds AS (
    SELECT r.id, r.payment_id, r.kind, r.amount_atomic, r.account, r.asset, r.entry_id, pay.state, pay.payer,
           pay.network, pay.amount_atomic AS sale_atomic, e.kind AS entry_kind, e.payment_id AS entry_payment,
           (SELECT s.id FROM journal_entries s WHERE s.payment_id = r.payment_id AND s.kind = 'settlement')
               AS settlement_id,
           e.reverses,
           (SELECT COALESCE(sum(p.amount_atomic) FILTER (WHERE p.account LIKE 'revenue:%'), 0)
            FROM journal_postings p WHERE p.entry_id = r.entry_id) AS revenue_atomic,
           (SELECT COALESCE(-sum(p.amount_atomic) FILTER (WHERE p.account = r.account AND p.asset = r.asset), 0)
            FROM journal_postings p WHERE p.entry_id = r.entry_id) AS credited_atomic,
           (SELECT count(*) FROM journal_postings p WHERE p.entry_id = r.entry_id) AS postings,
           (SELECT 'receivable:batch:' || c.network || ':' || c.receiver FROM batch_vouchers v
            JOIN batch_channels c ON c.channel_id = v.channel_id WHERE v.payment_id = r.payment_id) AS receivable
    FROM payment_refunds r JOIN payments pay ON pay.id = r.payment_id JOIN journal_entries e ON e.id = r.entry_id
), problems AS (
    SELECT payment_id,
           CASE WHEN entry_kind <> 'reversal' OR entry_payment IS DISTINCT FROM payment_id
                     OR reverses IS DISTINCT FROM settlement_id THEN
                    'refund ' || id || ': entry ' || entry_id || ' is not a reversal of its settlement entry'
                WHEN amount_atomic > sale_atomic THEN
                    'refund ' || id || ' of ' || amount_atomic || ' is more than the sale, ' || sale_atomic
                WHEN revenue_atomic <> amount_atomic OR credited_atomic <> amount_atomic OR postings <> 2 THEN
                    'refund ' || id || ': entry ' || entry_id || ' debits revenue ' || revenue_atomic || ' and credits '
                    || account || ' ' || credited_atomic || ' in ' || postings || ' postings; the refund is '
                    || amount_atomic
                WHEN kind = 'voucher_unclaimed' AND (state <> 'refunded' OR account IS DISTINCT FROM receivable) THEN
                    'refund ' || id || ' of an unclaimed voucher: the payment is ' || state || ' and it credits '
                    || account
                WHEN kind = 'payable' AND (state NOT IN ('settled', 'claimed_onchain')
                                           OR account <> 'payable:refunds:' || network || ':' || payer) THEN
                    'refund ' || id || ' owed to the payer: the payment is ' || state || ' and it credits ' || account
           END AS detail
    FROM refunds
    UNION ALL
    SELECT e.payment_id, 'reversal entry ' || e.id || ' of refunded payment ' || e.payment_id
                         || ' is not its refund''s: refunded twice?'
    FROM journal_entries e JOIN payment_refunds r ON r.payment_id = e.payment_id
    WHERE e.kind = 'reversal' AND e.id <> r.entry_id
    UNION ALL
    SELECT pay.id, 'payment ' || pay.id || ' is refunded but has no refund of an unclaimed voucher'
    FROM payments pay
    WHERE pay.state = 'refunded'
          AND NOT EXISTS (SELECT 1 FROM payment_refunds r WHERE r.payment_id = pay.id AND r.kind = 'voucher_unclaimed')
)
SELECT payment_id, detail, count(*) OVER () AS total
FROM problems WHERE detail IS NOT NULL
ORDER BY payment_id, detail
LIMIT $1;

-- name: verify_refund_transfers
-- Each transfer that paid a refund owed is booked by its own adjustment entry: the refund's payable debited by the
-- refund's amount and the sender's on-chain account credited by it, in the refund's asset, and nothing else.
WITH transfers AS (
    SELECT t.id, t.refund_id, t.entry_id, t.amount_atomic, r.kind, r.amount_atomic AS owed_atomic, e.kind AS entry_kind,
           (SELECT count(*) FROM journal_postings p WHERE p.entry_id = t.entry_id) AS postings,
           (SELECT COALESCE(sum(p.amount_atomic) FILTER (WHERE p.account = r.account AND p.asset = r.asset), 0)
            FROM journal_postings p WHERE p.entry_id = t.entry_id) AS debited_atomic,
           (SELECT COALESCE(-sum(p.amount_atomic) FILTER (
                       WHERE p.account = 'onchain:' || t.network || ':' || lower(t.sender) AND p.asset = r.asset), 0)
            FROM journal_postings p WHERE p.entry_id = t.entry_id) AS credited_atomic
    FROM refund_transfers t JOIN payment_refunds r ON r.id = t.refund_id JOIN journal_entries e ON e.id = t.entry_id
), problems AS (
    SELECT refund_id,
           CASE WHEN kind <> 'payable' OR amount_atomic <> owed_atomic THEN
                    'transfer ' || id || ' pays ' || amount_atomic || ' for a ' || kind || ' refund of ' || owed_atomic
                WHEN entry_kind <> 'adjustment' OR postings <> 2 OR debited_atomic <> amount_atomic
                     OR credited_atomic <> amount_atomic THEN
                    'transfer ' || id || ': entry ' || entry_id || ' debits the payable ' || debited_atomic
                    || ' and credits the sender ' || credited_atomic || ' in ' || postings || ' postings; it moved '
                    || amount_atomic
           END AS detail
    FROM transfers
)
SELECT refund_id, detail, count(*) OVER () AS total FROM problems WHERE detail IS NOT NULL ORDER BY refund_id LIMIT $1;

-- name: verify_refund_payables
-- Each `payable:refunds:*` account holds exactly what refunds owe that payer in that asset, less the transfers
-- that paid them.
WITH posted AS (
    SELECT account, asset, -sum(amount_atomic) AS posted_atomic
    FROM journal_postings WHERE account LIKE 'payable:refunds:%'
    GROUP BY account, asset
), owed AS (
    SELECT r.account, r.asset, sum(r.amount_atomic) - COALESCE(sum(t.amount_atomic), 0) AS owed_atomic
    FROM payment_refunds r LEFT JOIN refund_transfers t ON t.refund_id = r.id
    WHERE r.kind = 'payable'
    GROUP BY r.account, r.asset
)
SELECT COALESCE(posted.account, owed.account) AS account, COALESCE(posted.asset, owed.asset) AS asset,
       COALESCE(posted.posted_atomic, 0) AS posted_atomic, COALESCE(owed.owed_atomic, 0) AS owed_atomic,
       count(*) OVER () AS total
FROM posted FULL JOIN owed ON owed.account = posted.account AND owed.asset = posted.asset
WHERE COALESCE(posted.posted_atomic, 0) <> COALESCE(owed.owed_atomic, 0)
ORDER BY 1, 2
LIMIT $1;

-- name: verify_refund_channels
-- A channel's refunded total is the sum of its vouchers refunded before their claim, and what it claimed plus
-- what was refunded is within what it charged (a claim never took refunded money).
WITH sums AS (
    SELECT v.channel_id, sum(r.amount_atomic) AS refunded_atomic
    FROM payment_refunds r JOIN batch_vouchers v ON v.payment_id = r.payment_id
    WHERE r.kind = 'voucher_unclaimed'
    GROUP BY v.channel_id
), problems AS (
    SELECT c.channel_id,
           CASE WHEN c.refunded_atomic <> COALESCE(s.refunded_atomic, 0) THEN
                    'refunded is ' || c.refunded_atomic || ' but its refunded vouchers sum to '
                    || COALESCE(s.refunded_atomic, 0)
                WHEN c.claimed_atomic + c.refunded_atomic > c.charged_atomic THEN
                    'claimed ' || c.claimed_atomic || ' plus refunded ' || c.refunded_atomic || ' exceeds charged '
                    || c.charged_atomic
           END AS detail
    FROM batch_channels c LEFT JOIN sums s ON s.channel_id = c.channel_id
)
SELECT channel_id, detail, count(*) OVER () AS total
FROM problems WHERE detail IS NOT NULL
ORDER BY channel_id
LIMIT $1;
