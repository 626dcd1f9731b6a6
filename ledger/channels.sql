-- batch-settlement: the channel mirror, voucher bookings, claims and sweeps (ledger/channels.py),
-- and the checks `ledger verify` runs over them (ledger/verify.py). Amounts are numeric(78,0).

-- name: batch_channel_upsert
-- Mirror a channel's on-chain state. Its terms are written once (the id is their hash); the chain's claimed
-- total only grows, and what we charged never drops below it (nor ever decreases). A voucher ceiling left
-- below the new charged total is useless for a claim and is dropped. A snapshot older than a refund already
-- mirrored (its refundNonce is lower) is stale: its balance and withdrawal are not taken (a voucher racing a
-- cooperative refund would otherwise be charged against the money refunded).
INSERT INTO batch_channels (channel_id, network, token, payer, payer_authorizer, receiver, receiver_authorizer,
                            withdraw_delay, salt, balance_atomic, claimed_atomic, charged_atomic,
                            withdraw_requested_at, withdrawal_amount_atomic, refund_nonce)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)
ON CONFLICT (channel_id) DO UPDATE
    SET balance_atomic = CASE WHEN EXCLUDED.refund_nonce < batch_channels.refund_nonce THEN batch_channels.balance_atomic
                              ELSE EXCLUDED.balance_atomic END,
        claimed_atomic = GREATEST(batch_channels.claimed_atomic, EXCLUDED.claimed_atomic),
        charged_atomic = GREATEST(batch_channels.charged_atomic, EXCLUDED.claimed_atomic),
        signed_max_atomic = CASE WHEN batch_channels.signed_max_atomic < EXCLUDED.claimed_atomic THEN NULL
                                 ELSE batch_channels.signed_max_atomic END,
        signature = CASE WHEN batch_channels.signed_max_atomic < EXCLUDED.claimed_atomic THEN NULL
                         ELSE batch_channels.signature END,
        withdraw_requested_at = CASE WHEN EXCLUDED.refund_nonce < batch_channels.refund_nonce
                                     THEN batch_channels.withdraw_requested_at ELSE EXCLUDED.withdraw_requested_at END,
        withdrawal_amount_atomic = CASE WHEN EXCLUDED.refund_nonce < batch_channels.refund_nonce
                                        THEN batch_channels.withdrawal_amount_atomic
                                        ELSE EXCLUDED.withdrawal_amount_atomic END,
        refund_nonce = GREATEST(batch_channels.refund_nonce, EXCLUDED.refund_nonce),
        mirrored_at = now()
RETURNING *;

-- name: batch_channel
SELECT * FROM batch_channels WHERE channel_id = $1;

-- name: batch_channel_lock
-- The per-channel lock every channel write takes first (one at a time per channel, across workers and replicas).
SELECT * FROM batch_channels WHERE channel_id = $1 FOR UPDATE;

-- name: batch_book_vouchers
-- Served vouchers booked together (migration 0016's wg_batch_book_group): each one's verdict and payment.
SELECT n, verdict, booked_id
FROM wg_batch_book_group($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::numeric[], $9::text[], $10::text[], $11::text[], $12::text[], $13::numeric[],
                         $14::text[], $15::integer[], $16::text[], $17::text[], $18::numeric[], $19)
ORDER BY n;

-- name: batch_book_voucher
-- One served voucher booked, waiting for its channel's lock if another transaction holds it ($15: its postings as
-- a JSON array of [account, asset, amount]).
SELECT 1 AS n, b.verdict, b.booked_id
FROM (SELECT array_agg(line->>0 ORDER BY o) AS accounts, array_agg(line->>1 ORDER BY o) AS assets,
             array_agg((line->>2)::numeric ORDER BY o) AS amounts
      FROM jsonb_array_elements($15::text::jsonb) WITH ORDINALITY AS l (line, o)) lines,
     LATERAL wg_batch_book_voucher($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, lines.accounts,
                                   lines.assets, lines.amounts, $16, true) b;

-- name: batch_channels_by_id
SELECT * FROM batch_channels WHERE channel_id = ANY($1::text[]);

-- name: batch_owed
-- Channels with accepted vouchers not yet claimed on chain; a pending withdrawal first (its claim must land
-- before the delay ends), then the largest amounts. A claim is for what was charged less what the operator
-- refunded before a claim (0010: the payer keeps that in its channel), capped by the balance: a claim above it
-- reverts the whole batch.
SELECT *, charged_atomic - refunded_atomic - claimed_atomic AS owed_atomic,
       LEAST(charged_atomic - refunded_atomic, balance_atomic) AS claimable_atomic
FROM batch_channels
WHERE network = $1 AND charged_atomic > claimed_atomic AND charged_atomic - refunded_atomic > claimed_atomic
      AND signature IS NOT NULL
ORDER BY withdraw_requested_at > 0 DESC, charged_atomic - refunded_atomic - claimed_atomic DESC, channel_id
LIMIT $2;

-- name: batch_tx_lock
-- One recording of a claim or sweep transaction at a time, per hash.
SELECT pg_advisory_xact_lock(hashtextextended('worldgate:batch:tx:' || $1, 0));

-- name: batch_tx_by_hash
SELECT * FROM batch_transactions WHERE tx_hash = $1;

-- name: batch_tx_insert
INSERT INTO batch_transactions (tx_hash, network, kind, receiver, token, amount_atomic, gas_cost_atomic, relayer,
                                entry_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: batch_claim_channel
UPDATE batch_channels SET claimed_atomic = GREATEST(claimed_atomic, $2) WHERE channel_id = $1;

-- name: batch_mark_claimed
-- A channel's claim landed at total $2: its accepted vouchers up to that ceiling are claimed on chain.
UPDATE payments pay SET state = 'claimed_onchain', tx_hash = $3, error_reason = NULL
FROM batch_vouchers v
WHERE v.payment_id = pay.id AND v.channel_id = $1 AND v.max_claimable_atomic <= $2 AND pay.state = 'accepted'
RETURNING pay.id, pay.amount_atomic;

-- name: batch_sweepable
-- What `settle(receiver, token)` sweeps, as the ledger knows it: the claimed payments of that receiver and token,
-- locked, in the order their claims were recorded, with the running total through each claim transaction (a claim
-- recorded after the sweep was mined is left for the next sweep: its payments come last).
WITH claimed AS (
    SELECT pay.id, pay.amount_atomic, v.channel_id, t.recorded_at, pay.tx_hash
    FROM payments pay
         JOIN batch_vouchers v ON v.payment_id = pay.id
         JOIN batch_channels c ON c.channel_id = v.channel_id
         LEFT JOIN batch_transactions t ON t.tx_hash = pay.tx_hash
    WHERE c.network = $1 AND c.receiver = $2 AND c.token = $3 AND pay.state = 'claimed_onchain'
    FOR UPDATE OF pay
)
SELECT id, amount_atomic, channel_id,
       sum(amount_atomic) OVER (ORDER BY recorded_at, tx_hash) AS through_claim_atomic
FROM claimed
ORDER BY recorded_at, tx_hash, id;

-- name: batch_mark_settled
UPDATE payments SET state = 'settled', tx_hash = $2, settled_at = now(), error_reason = NULL
WHERE id = ANY($1::bigint[]) AND state = 'claimed_onchain'
RETURNING id;

-- name: batch_channels_swept
UPDATE batch_channels c SET unsettled_atomic = c.unsettled_atomic - s.amount_atomic
FROM unnest($1::text[], $2::numeric[]) AS s (channel_id, amount_atomic)
WHERE c.channel_id = s.channel_id;

-- name: batch_status
-- Per channel: the mirror, what we charged, what is owed (charged, less sales the operator refunded before a
-- claim, not yet claimed), claimed, swept, and the vouchers.
WITH sums AS (
    SELECT v.channel_id,
           count(*) FILTER (WHERE pay.state IN ('accepted', 'claimed_onchain', 'settled')) AS vouchers,
           COALESCE(sum(pay.amount_atomic) FILTER (WHERE pay.state = 'accepted'), 0) AS accepted_atomic,
           COALESCE(sum(pay.amount_atomic) FILTER (WHERE pay.state = 'claimed_onchain'), 0) AS claimed_booked_atomic,
           COALESCE(sum(pay.amount_atomic) FILTER (WHERE pay.state = 'settled'), 0) AS settled_atomic
    FROM batch_vouchers v JOIN payments pay ON pay.id = v.payment_id
    GROUP BY v.channel_id
)
SELECT c.channel_id, c.network, c.token, c.payer, c.receiver, c.balance_atomic, c.charged_atomic,
       GREATEST(c.charged_atomic - c.refunded_atomic - c.claimed_atomic, 0) AS owed_atomic, c.claimed_atomic,
       c.unsettled_atomic,
       COALESCE(s.settled_atomic, 0) AS settled_atomic, COALESCE(s.accepted_atomic, 0) AS accepted_atomic,
       COALESCE(s.claimed_booked_atomic, 0) AS claimed_booked_atomic, COALESCE(s.vouchers, 0) AS vouchers,
       c.withdraw_requested_at, c.mirrored_at, c.updated_at
FROM batch_channels c LEFT JOIN sums s ON s.channel_id = c.channel_id
WHERE $1::text IS NULL OR c.network = $1
ORDER BY c.network, c.receiver, c.channel_id;

-- ---------------------------------------------------------------------------------------------
-- verify (ledger/verify.py): one set-based statement per check, at most $1 violations, `total` counts all.
-- ---------------------------------------------------------------------------------------------

-- name: verify_batch_counts
SELECT (SELECT count(*) FROM batch_channels) AS channels, (SELECT count(*) FROM batch_vouchers) AS vouchers;

-- name: verify_booked_entries
-- A settlement entry credits revenue with exactly its payment's amount, and that payment is booked: settled,
-- or a batch sale (it has a voucher) accepted or claimed on chain.
SELECT e.id AS entry_id, e.payment_id, pay.state, pay.amount_atomic, v.payment_id IS NOT NULL AS batch,
       -COALESCE(sum(p.amount_atomic) FILTER (WHERE p.account LIKE 'revenue:%'), 0) AS revenue_atomic,
       count(*) OVER () AS total
FROM journal_entries e
     LEFT JOIN payments pay ON pay.id = e.payment_id
     LEFT JOIN batch_vouchers v ON v.payment_id = e.payment_id
     LEFT JOIN journal_postings p ON p.entry_id = e.id
WHERE e.kind = 'settlement'
GROUP BY e.id, pay.id, v.payment_id
HAVING NOT (pay.state IS NOT DISTINCT FROM 'settled'
            OR (v.payment_id IS NOT NULL AND pay.state IN ('accepted', 'claimed_onchain')))
       OR -COALESCE(sum(p.amount_atomic) FILTER (WHERE p.account LIKE 'revenue:%'), 0)
          IS DISTINCT FROM pay.amount_atomic
ORDER BY e.id
LIMIT $1;

-- name: verify_batch_payments
-- A batch sale accepted, claimed or settled has exactly one acceptance entry, which debits its receiver's
-- receivable by its amount; only a batch sale (with a voucher) is ever accepted or claimed on chain.
WITH booked AS (
    SELECT pay.id, pay.state, pay.amount_atomic, v.payment_id IS NOT NULL AS batch,
           count(DISTINCT e.id) AS entries,
           COALESCE(sum(p.amount_atomic) FILTER (
               WHERE p.account = 'receivable:batch:' || c.network || ':' || c.receiver
                     AND p.asset = c.network || '/' || c.token), 0) AS receivable_atomic
    FROM payments pay
         LEFT JOIN batch_vouchers v ON v.payment_id = pay.id
         LEFT JOIN batch_channels c ON c.channel_id = v.channel_id
         LEFT JOIN journal_entries e ON e.payment_id = pay.id AND e.kind = 'settlement'
         LEFT JOIN journal_postings p ON p.entry_id = e.id
    WHERE pay.state IN ('accepted', 'claimed_onchain') OR (v.payment_id IS NOT NULL AND pay.state = 'settled')
    GROUP BY pay.id, v.payment_id
), problems AS (
    SELECT id, state,
           CASE WHEN NOT batch THEN 'is ' || state || ' but has no batch voucher'
                WHEN entries <> 1 THEN 'has ' || entries || ' acceptance entries; it needs exactly 1'
                WHEN receivable_atomic <> amount_atomic THEN
                    'its acceptance entry debits ' || receivable_atomic || ' to its receivable, not its amount '
                    || amount_atomic
           END AS detail
    FROM booked
)
SELECT id AS payment_id, state, detail, count(*) OVER () AS total
FROM problems WHERE detail IS NOT NULL
ORDER BY id
LIMIT $1;

-- name: verify_batch_receivables
-- Each receivable account holds exactly the amounts of its receiver's batch sales accepted or claimed but not
-- yet swept: a sweep that was never booked, or booked twice, shows here.
WITH posted AS (
    SELECT account, asset, sum(amount_atomic) AS posted_atomic
    FROM journal_postings WHERE account LIKE 'receivable:batch:%'
    GROUP BY account, asset
), owed AS (
    SELECT 'receivable:batch:' || c.network || ':' || c.receiver AS account, c.network || '/' || c.token AS asset,
           sum(pay.amount_atomic) AS owed_atomic
    FROM payments pay JOIN batch_vouchers v ON v.payment_id = pay.id JOIN batch_channels c ON c.channel_id = v.channel_id
    WHERE pay.state IN ('accepted', 'claimed_onchain')
    GROUP BY 1, 2
)
SELECT COALESCE(posted.account, owed.account) AS account, COALESCE(posted.asset, owed.asset) AS asset,
       COALESCE(posted.posted_atomic, 0) AS posted_atomic, COALESCE(owed.owed_atomic, 0) AS owed_atomic,
       count(*) OVER () AS total
FROM posted FULL JOIN owed ON owed.account = posted.account AND owed.asset = posted.asset
WHERE COALESCE(posted.posted_atomic, 0) <> COALESCE(owed.owed_atomic, 0)
ORDER BY 1, 2
LIMIT $1;

-- name: verify_batch_channels
-- A channel's unsettled total is the sum of its accepted and claimed sales; what it charged covers every voucher
-- it booked.
WITH sums AS (
    SELECT v.channel_id,
           COALESCE(sum(pay.amount_atomic) FILTER (WHERE pay.state IN ('accepted', 'claimed_onchain')), 0)
               AS unsettled_atomic,
           max(v.max_claimable_atomic) FILTER (WHERE pay.state IN ('accepted', 'claimed_onchain', 'settled'))
               AS booked_max_atomic
    FROM batch_vouchers v JOIN payments pay ON pay.id = v.payment_id
    GROUP BY v.channel_id
), problems AS (
    SELECT c.channel_id,
           CASE WHEN c.unsettled_atomic <> COALESCE(s.unsettled_atomic, 0) THEN
                    'unsettled is ' || c.unsettled_atomic || ' but its accepted and claimed sales sum to '
                    || COALESCE(s.unsettled_atomic, 0)
                WHEN c.charged_atomic < COALESCE(s.booked_max_atomic, 0) THEN
                    'charged is ' || c.charged_atomic || ' but it booked a voucher of ' || s.booked_max_atomic
           END AS detail
    FROM batch_channels c LEFT JOIN sums s ON s.channel_id = c.channel_id
)
SELECT channel_id, detail, count(*) OVER () AS total
FROM problems WHERE detail IS NOT NULL
ORDER BY channel_id
LIMIT $1;

-- name: verify_batch_sweeps
-- A recorded sweep moved, in the books, exactly the sales it settled; a settled batch sale names a recorded sweep.
WITH swept AS (
    SELECT t.tx_hash, t.amount_atomic, t.entry_id,
           (SELECT COALESCE(sum(pay.amount_atomic), 0) FROM payments pay JOIN batch_vouchers v ON v.payment_id = pay.id
            WHERE pay.state = 'settled' AND pay.tx_hash = t.tx_hash) AS sales_atomic,
           (SELECT COALESCE(-sum(p.amount_atomic), 0) FROM journal_postings p
            WHERE p.entry_id = t.entry_id AND p.account LIKE 'receivable:batch:%') AS booked_atomic
    FROM batch_transactions t WHERE t.kind = 'settle'
), problems AS (
    SELECT tx_hash, 'sweep ' || tx_hash || ' of ' || amount_atomic || ' settled sales of ' || sales_atomic
                    || ' and credited receivables with ' || booked_atomic AS detail
    FROM swept WHERE amount_atomic <> sales_atomic OR amount_atomic <> booked_atomic
    UNION ALL
    SELECT pay.tx_hash, 'settled batch payment ' || pay.id || ' names ' || COALESCE(pay.tx_hash, 'no transaction')
                        || ', which is no recorded sweep'
    FROM payments pay JOIN batch_vouchers v ON v.payment_id = pay.id
    WHERE pay.state = 'settled'
          AND NOT EXISTS (SELECT 1 FROM batch_transactions t WHERE t.tx_hash = pay.tx_hash AND t.kind = 'settle')
)
SELECT tx_hash, detail, count(*) OVER () AS total
FROM problems
ORDER BY tx_hash, detail
LIMIT $1;
