-- Every statement the ledger runs, by name (loaded by ledger/sql.py). Amounts are numeric(78,0).

-- name: claim_payment
-- Claim a payment key before its request is served: insert it, or re-claim a key whose earlier claim
-- was released (nothing charged). No row back means another request holds or consumed the key. With an
-- instance ($13, migration 0014) the claim's lease names the process holding it.
WITH claimed AS (
    INSERT INTO payments (payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route, resource,
                          stream, settlement_mode, state, valid_before)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'claimed', $12)
    ON CONFLICT (payment_key) DO UPDATE
        SET state = 'claimed', claims = payments.claims + 1, route = EXCLUDED.route, resource = EXCLUDED.resource,
            stream = EXCLUDED.stream, settlement_mode = EXCLUDED.settlement_mode, error_reason = NULL
        WHERE payments.state = 'released'
    RETURNING id
), leased AS (
    INSERT INTO claim_leases (payment_id, instance_id) SELECT id, $13::bigint FROM claimed WHERE $13::bigint IS NOT NULL
    ON CONFLICT (payment_id) DO UPDATE SET instance_id = EXCLUDED.instance_id, taken_at = now()
)
SELECT id FROM claimed;

-- name: payment_state_by_key
-- The claim holding a key, what the retry of its payment needs to resolve it, and who holds it: `held` is
-- whether a request may still be working on it (its holder's lease runs; a claim without a lease row, made
-- before 0014, for $2 seconds after its last change), the holder's identity for the app's own check.
SELECT p.id, p.state, p.route, p.resource, p.amount_atomic, p.tx_hash, p.payment_key, p.network, p.asset,
       p.payer, p.pay_to, p.stream, p.valid_before, p.updated_at, p.delivered_at IS NOT NULL AS delivered,
       l.payment_id IS NOT NULL AS leased, l.instance_id, i.host, i.pid, i.pid_started,
       CASE WHEN l.payment_id IS NULL THEN p.updated_at > now() - make_interval(secs => $2)
            ELSE COALESCE(i.lease_until > now(), false) END AS held
FROM payments p
     LEFT JOIN claim_leases l ON l.payment_id = p.id
     LEFT JOIN gateway_instances i ON i.id = l.instance_id
WHERE p.payment_key = $1;

-- name: advance_payment
-- Move a payment along one edge of the state machine; no row back if it was not in the expected state, or
-- if a lease is named ($6) and that instance no longer holds the claim (another took it over).
UPDATE payments SET state = $3, error_reason = $4, tx_hash = COALESCE($5, tx_hash)
WHERE id = $1 AND state = $2
  AND ($6::bigint IS NULL OR EXISTS (SELECT 1 FROM claim_leases l WHERE l.payment_id = $1 AND l.instance_id = $6))
RETURNING id;

-- name: record_tx_hash
-- Write-ahead: the hash of a settlement transaction, stored before it is broadcast (by the lease's holder,
-- if one is named: a holder whose claim was taken over must not broadcast).
UPDATE payments SET tx_hash = $2
WHERE id = $1 AND state = 'settling'
  AND ($3::bigint IS NULL OR EXISTS (SELECT 1 FROM claim_leases l WHERE l.payment_id = $1 AND l.instance_id = $3))
RETURNING id;

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
-- /*group*/, and /*filters*/ with whitelisted `AND <column> = $n` terms whose values are bound);
-- revenue is read from the journal (credits to revenue:* accounts, net of any reversal), not from
-- payments. The window is read first so only the journal lines of its payments are summed.
WITH pay AS MATERIALIZED (
    SELECT pay.* FROM payments pay
    WHERE COALESCE(pay.settled_at, pay.created_at) >= $1 AND COALESCE(pay.settled_at, pay.created_at) < $2
          /*filters*/
), revenue AS (
    SELECT e.payment_id, -sum(p.amount_atomic) AS amount_atomic
    FROM pay JOIN journal_entries e ON e.payment_id = pay.id JOIN journal_postings p ON p.entry_id = e.id
    WHERE p.account LIKE 'revenue:%'
    GROUP BY e.payment_id
)
SELECT /*group*/ AS key,
       count(*) FILTER (WHERE pay.state = 'settled') AS settled,
       -- pending: charged, money not yet moved (exact: settling; batch: accepted or claimed, not swept)
       count(*) FILTER (WHERE pay.state IN ('settling', 'accepted', 'claimed_onchain')) AS pending,
       count(*) FILTER (WHERE pay.state = 'failed') AS failed,
       count(*) FILTER (WHERE pay.state IN ('released', 'expired')) AS released,
       count(*) FILTER (WHERE pay.state IN ('claimed', 'verified', 'served')) AS in_flight,
       COALESCE(sum(revenue.amount_atomic), 0) AS revenue_atomic,
       COALESCE(sum(pay.gas_cost_atomic), 0) AS gas_cost_atomic
FROM pay LEFT JOIN revenue ON revenue.payment_id = pay.id
GROUP BY 1
ORDER BY 1;

-- name: summary_outcomes
-- One pass over the window's payments (same window and /*filters*/ as `report`): counts and amounts
-- per outcome, journal revenue (net of reversals; a voucher's is booked when it is accepted, before its money
-- moves) over the sales that booked it, what reversals took back, and the exposure:
-- data served or being settled but not (yet) paid for.
WITH sel AS MATERIALIZED (
    SELECT pay.id, pay.state, pay.amount_atomic FROM payments pay
    WHERE COALESCE(pay.settled_at, pay.created_at) >= $1 AND COALESCE(pay.settled_at, pay.created_at) < $2
          /*filters*/
), booked AS (
    SELECT e.payment_id,
           -sum(p.amount_atomic) FILTER (WHERE p.account LIKE 'revenue:%') AS revenue_atomic,
           sum(p.amount_atomic) FILTER (WHERE e.kind = 'reversal' AND p.account LIKE 'revenue:%') AS reversed_atomic,
           bool_or(e.kind = 'reversal') AS reversed
    FROM sel JOIN journal_entries e ON e.payment_id = sel.id JOIN journal_postings p ON p.entry_id = e.id
    GROUP BY e.payment_id
)
SELECT count(*) FILTER (WHERE sel.state = 'settled') AS settled,
       COALESCE(sum(sel.amount_atomic) FILTER (WHERE sel.state = 'settled'), 0) AS settled_atomic,
       count(*) FILTER (WHERE booked.revenue_atomic IS NOT NULL) AS booked,
       COALESCE(sum(booked.revenue_atomic), 0) AS revenue_atomic,
       count(*) FILTER (WHERE sel.state IN ('settling', 'accepted', 'claimed_onchain')) AS pending,
       COALESCE(sum(sel.amount_atomic) FILTER (WHERE sel.state IN ('settling', 'accepted', 'claimed_onchain')), 0)
           AS pending_atomic,
       count(*) FILTER (WHERE sel.state = 'failed') AS failed,
       COALESCE(sum(sel.amount_atomic) FILTER (WHERE sel.state = 'failed'), 0) AS failed_atomic,
       count(*) FILTER (WHERE sel.state IN ('released', 'expired')) AS released,
       COALESCE(sum(sel.amount_atomic) FILTER (WHERE sel.state IN ('released', 'expired')), 0) AS released_atomic,
       count(*) FILTER (WHERE sel.state IN ('claimed', 'verified', 'served')) AS in_flight,
       COALESCE(sum(sel.amount_atomic) FILTER (WHERE sel.state IN ('claimed', 'verified', 'served')), 0)
           AS in_flight_atomic,
       count(*) FILTER (WHERE booked.reversed) AS refunded,
       COALESCE(sum(booked.reversed_atomic), 0) AS refunded_atomic,
       count(*) FILTER (WHERE sel.state IN ('served', 'settling', 'accepted', 'claimed_onchain')) AS exposure,
       COALESCE(sum(sel.amount_atomic) FILTER (WHERE sel.state IN ('served', 'settling', 'accepted', 'claimed_onchain')),
                0) AS exposure_atomic
FROM sel LEFT JOIN booked ON booked.payment_id = sel.id;

-- name: summary_gas
-- Gas the relayers paid for the window's settled payments, per network (native atomic units); batch
-- settlement's gas is its claims' and sweeps' (batch_transactions), recorded in the window, unfiltered.
SELECT network, sum(settled)::bigint AS settled, sum(gas_cost_atomic) AS gas_cost_atomic FROM (
    SELECT pay.network, count(*) AS settled, COALESCE(sum(pay.gas_cost_atomic), 0) AS gas_cost_atomic
    FROM payments pay
    WHERE pay.state = 'settled'
          AND COALESCE(pay.settled_at, pay.created_at) >= $1 AND COALESCE(pay.settled_at, pay.created_at) < $2
          /*filters*/
    GROUP BY pay.network
    UNION ALL
    SELECT network, 0, COALESCE(sum(gas_cost_atomic), 0) FROM batch_transactions
    WHERE recorded_at >= $1 AND recorded_at < $2
    GROUP BY network
) parts
GROUP BY network
ORDER BY network;

-- name: summary_open_flags
-- Open reconciliation findings about the window's payments, per kind.
SELECT f.kind, count(*) AS open
FROM reconcile_flags f JOIN payments pay ON pay.id = f.payment_id
WHERE f.resolved_at IS NULL
      AND COALESCE(pay.settled_at, pay.created_at) >= $1 AND COALESCE(pay.settled_at, pay.created_at) < $2
      /*filters*/
GROUP BY f.kind
ORDER BY f.kind;

-- ---------------------------------------------------------------------------------------------
-- verify: each check is one set-based statement returning its violations (at most $1 of them, with
-- the full count in `total`), run together in one read-only snapshot by ledger/verify.py.
-- ---------------------------------------------------------------------------------------------

-- name: verify_counts
SELECT (SELECT count(*) FROM payments) AS payments,
       (SELECT count(*) FROM payment_events) AS events,
       (SELECT count(*) FROM journal_entries) AS entries,
       (SELECT count(*) FROM journal_postings) AS postings,
       (SELECT count(*) FROM (SELECT DISTINCT account, asset FROM account_balances) kept) AS balances;

-- name: verify_entry_postings
-- Double entry: every entry has at least two postings.
SELECT e.id AS entry_id, e.kind, e.payment_id, count(p.id) AS postings, count(*) OVER () AS total
FROM journal_entries e LEFT JOIN journal_postings p ON p.entry_id = e.id
GROUP BY e.id
HAVING count(p.id) < 2
ORDER BY e.id
LIMIT $1;

-- name: verify_entry_balanced
-- Every entry sums to zero per asset.
SELECT p.entry_id, p.asset, sum(p.amount_atomic) AS off_by, count(*) OVER () AS total
FROM journal_postings p
GROUP BY p.entry_id, p.asset
HAVING sum(p.amount_atomic) <> 0
ORDER BY p.entry_id, p.asset
LIMIT $1;

-- name: verify_settlement_entries
-- A settlement entry credits revenue with exactly its payment's amount, and that payment is settled.
SELECT e.id AS entry_id, e.payment_id, pay.state, pay.amount_atomic,
       -COALESCE(sum(p.amount_atomic) FILTER (WHERE p.account LIKE 'revenue:%'), 0) AS revenue_atomic,
       count(*) OVER () AS total
FROM journal_entries e
     LEFT JOIN payments pay ON pay.id = e.payment_id
     LEFT JOIN journal_postings p ON p.entry_id = e.id
WHERE e.kind = 'settlement'
GROUP BY e.id, pay.id
HAVING pay.state IS DISTINCT FROM 'settled'
       OR -COALESCE(sum(p.amount_atomic) FILTER (WHERE p.account LIKE 'revenue:%'), 0)
          IS DISTINCT FROM pay.amount_atomic
ORDER BY e.id
LIMIT $1;

-- name: verify_settled_payments
-- Every settled payment has exactly one settlement entry.
SELECT pay.id AS payment_id, pay.tx_hash, count(e.id) AS entries, count(*) OVER () AS total
FROM payments pay LEFT JOIN journal_entries e ON e.payment_id = pay.id AND e.kind = 'settlement'
WHERE pay.state = 'settled'
GROUP BY pay.id
HAVING count(e.id) <> 1
ORDER BY pay.id
LIMIT $1;

-- name: verify_account_balances
-- account_balances (kept by trigger, in shards) equals the postings summed per (account, asset): same
-- accounts, same balances, same posting counts.
WITH sums AS (
    SELECT account, asset, sum(amount_atomic) AS balance_atomic, count(*) AS postings
    FROM journal_postings GROUP BY account, asset
), b AS (
    SELECT account, asset, sum(balance_atomic) AS balance_atomic, sum(postings) AS postings
    FROM account_balances GROUP BY account, asset
)
SELECT COALESCE(s.account, b.account) AS account, COALESCE(s.asset, b.asset) AS asset,
       s.balance_atomic AS posted_atomic, s.postings AS posted, b.balance_atomic AS kept_atomic, b.postings AS kept,
       count(*) OVER () AS total
FROM sums s FULL JOIN b ON b.account = s.account AND b.asset = s.asset
WHERE s.account IS NULL OR b.account IS NULL
      OR s.balance_atomic <> b.balance_atomic OR s.postings <> b.postings
ORDER BY 1, 2
LIMIT $1;

-- name: verify_event_chains
-- Each payment's events form a chain of allowed steps ending in its current state: the first enters
-- `claimed` from nothing (a voucher's may enter `accepted`: it is booked once served); each next one starts where the previous ended and is an edge of
-- payment_transitions (a re-claim is `released -> claimed`), or stays in the same state (the
-- payments_log trigger also logs a change of tx_hash, e.g. the write-ahead hash while settling).
WITH ev AS (
    SELECT id, payment_id, from_state, to_state,
           lag(to_state) OVER w AS previous, row_number() OVER w AS n
    FROM payment_events
    WINDOW w AS (PARTITION BY payment_id ORDER BY id)
), last AS (
    SELECT DISTINCT ON (payment_id) payment_id, id, to_state FROM payment_events ORDER BY payment_id, id DESC
), problems AS (
    SELECT ev.payment_id, ev.id AS event_id,
           CASE
               WHEN ev.n = 1 AND (ev.from_state IS NOT NULL OR NOT (
                   ev.to_state = 'claimed'
                   OR (ev.to_state = 'accepted'
                       AND EXISTS (SELECT 1 FROM batch_vouchers v WHERE v.payment_id = ev.payment_id))
               )) THEN
                   'first event ' || ev.id || ' is ' || COALESCE(ev.from_state, 'NULL') || ' -> ' || ev.to_state
                   || ', not NULL -> claimed'
               WHEN ev.n > 1 AND ev.from_state IS DISTINCT FROM ev.previous THEN
                   'event ' || ev.id || ' starts from ' || COALESCE(ev.from_state, 'NULL')
                   || ' but the previous event ended in ' || ev.previous
               WHEN ev.n > 1 AND ev.from_state <> ev.to_state AND NOT EXISTS (
                   SELECT 1 FROM payment_transitions t WHERE t.from_state = ev.from_state AND t.to_state = ev.to_state
               ) THEN
                   'event ' || ev.id || ' is an illegal transition ' || ev.from_state || ' -> ' || ev.to_state
           END AS detail
    FROM ev
    UNION ALL
    SELECT pay.id, last.id,
           CASE WHEN last.id IS NULL THEN 'has no events but is ' || pay.state
                ELSE 'is ' || pay.state || ' but its last event ' || last.id || ' entered ' || last.to_state
           END
    FROM payments pay LEFT JOIN last ON last.payment_id = pay.id
    WHERE last.to_state IS DISTINCT FROM pay.state
)
SELECT payment_id, event_id, detail, count(*) OVER () AS total
FROM problems
WHERE detail IS NOT NULL
ORDER BY payment_id, event_id NULLS FIRST
LIMIT $1;

-- name: verify_triggers
-- The protective triggers exist on their tables and fire: enabled as ORIGIN ('O') or ALWAYS ('A').
-- 'D' is disabled; 'R' fires only under session_replication_role = replica, i.e. never in normal use.
SELECT expected.name, expected.table_name, t.tgenabled::text AS enabled
FROM unnest($1::text[], $2::text[]) AS expected (name, table_name)
     LEFT JOIN pg_trigger t ON t.tgname = expected.name AND t.tgrelid = to_regclass(expected.table_name)
WHERE t.oid IS NULL OR t.tgenabled NOT IN ('O', 'A')
ORDER BY expected.name;

-- ---------------------------------------------------------------------------------------------
-- audit: the ledger side of reconciliation against the chain (ledger/audit.py).
-- ---------------------------------------------------------------------------------------------

-- name: audit_open_payments
-- Payments still open (not settled, failed, released or expired) and untouched for $1 seconds,
-- oldest first; the partial index payments_open serves it.
SELECT id, payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route, resource, stream, state,
       tx_hash, valid_before, error_reason, created_at, updated_at
FROM payments
WHERE state IN ('claimed', 'verified', 'served', 'settling')
      AND updated_at < now() - make_interval(secs => $1)
      AND scheme_id <> 'v2-eip155-batch-settlement'  -- a batch voucher moves no money itself: its channel's claim and sweep do
ORDER BY updated_at, id
LIMIT $2;

-- name: audit_unbooked_candidates
-- Payments that booked nothing (released, expired) and untouched for $1 seconds, most recently
-- closed first: reconcile asks the chain whether their authorization was used anyway.
SELECT id, payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route, resource, stream, state,
       tx_hash, valid_before, error_reason, created_at, updated_at
FROM payments
WHERE state IN ('released', 'expired')
      AND updated_at < now() - make_interval(secs => $1)
      AND scheme_id <> 'v2-eip155-batch-settlement'
ORDER BY updated_at DESC, id DESC
LIMIT $2;

-- name: audit_settled_after
-- Settled payments past a cursor (payment id), ascending, with what their settlement entry booked
-- in the payment's own token (the debit to onchain:<network>:<payTo>).
SELECT pay.id, pay.payment_key, pay.scheme_id, pay.network, pay.asset, pay.payer, pay.pay_to, pay.amount_atomic,
       pay.stream, pay.resource, pay.tx_hash, pay.gas_cost_atomic, pay.settled_at, e.id AS entry_id,
       (SELECT sum(p.amount_atomic) FROM journal_postings p
        WHERE p.entry_id = e.id AND p.amount_atomic > 0 AND p.asset = pay.network || '/' || lower(pay.asset))
           AS booked_atomic
FROM payments pay LEFT JOIN journal_entries e ON e.payment_id = pay.id AND e.kind = 'settlement'
WHERE pay.state = 'settled' AND pay.id > $1 AND pay.scheme_id <> 'v2-eip155-batch-settlement'
ORDER BY pay.id
LIMIT $2;

-- name: audit_settled_sample
-- A uniform random sample of settled payments (a spot check over the whole history).
SELECT pay.id, pay.payment_key, pay.scheme_id, pay.network, pay.asset, pay.payer, pay.pay_to, pay.amount_atomic,
       pay.stream, pay.resource, pay.tx_hash, pay.gas_cost_atomic, pay.settled_at, e.id AS entry_id,
       (SELECT sum(p.amount_atomic) FROM journal_postings p
        WHERE p.entry_id = e.id AND p.amount_atomic > 0 AND p.asset = pay.network || '/' || lower(pay.asset))
           AS booked_atomic
FROM (SELECT * FROM payments WHERE state = 'settled' AND scheme_id <> 'v2-eip155-batch-settlement' ORDER BY random() LIMIT $1) pay
     LEFT JOIN journal_entries e ON e.payment_id = pay.id AND e.kind = 'settlement'
ORDER BY pay.id;

-- name: flag_lock
-- The open/resolved state of a finding, locked so concurrent flaggers agree on who raised it.
-- `resolved`: reconcile had resolved it, so seeing it again reopens it (an operator's close stands).
SELECT resolved_at IS NOT NULL AND closed_by IS NULL AS resolved
FROM reconcile_flags WHERE payment_id = $1 AND kind = $2 FOR UPDATE;

-- name: flag_upsert
-- Raise a finding, or see it again: one row per (payment, kind); seeing it again bumps last_seen_at,
-- takes the new detail and reopens it, unless an operator closed it (closed_by). A reopened finding
-- is news again, so its acknowledgement is cleared. `inserted` is true only for a new row.
INSERT INTO reconcile_flags (payment_id, kind, detail, tx_hash) VALUES ($1, $2, $3, $4)
ON CONFLICT (payment_id, kind) DO UPDATE
    SET detail = EXCLUDED.detail, tx_hash = COALESCE(EXCLUDED.tx_hash, reconcile_flags.tx_hash),
        last_seen_at = now(),
        resolved_at = CASE WHEN reconcile_flags.closed_by IS NULL THEN NULL ELSE reconcile_flags.resolved_at END,
        acknowledged_at = CASE WHEN reconcile_flags.closed_by IS NULL AND reconcile_flags.resolved_at IS NOT NULL
                               THEN NULL ELSE reconcile_flags.acknowledged_at END,
        acknowledged_by = CASE WHEN reconcile_flags.closed_by IS NULL AND reconcile_flags.resolved_at IS NOT NULL
                               THEN NULL ELSE reconcile_flags.acknowledged_by END
RETURNING (xmax = 0) AS inserted;

-- name: flags_resolve
UPDATE reconcile_flags SET resolved_at = now()
WHERE payment_id = $1 AND kind = ANY($2::text[]) AND resolved_at IS NULL;

-- name: flags_open
SELECT f.id, f.payment_id, f.kind, f.detail, f.tx_hash, f.first_seen_at, f.last_seen_at,
       pay.network, pay.state, pay.amount_atomic
FROM reconcile_flags f JOIN payments pay ON pay.id = f.payment_id
WHERE f.resolved_at IS NULL AND ($2::text IS NULL OR f.kind = $2)
ORDER BY f.first_seen_at, f.id
LIMIT $1;

-- name: run_start
-- A new run starts at the furthest cursor any earlier run reached: a finished run's, or the last
-- progress an interrupted one saved (the cursor only moves forward, see run_update).
INSERT INTO reconcile_runs (trigger, cursor)
VALUES ($1, (SELECT COALESCE(max(cursor), 0) FROM reconcile_runs))
RETURNING id, trigger, started_at, finished_at, checked, resolved, flagged, cursor, error;

-- name: run_update
-- Progress of a run still going: totals so far (not increments, so a retried call is harmless).
UPDATE reconcile_runs SET checked = $2, resolved = $3, flagged = $4, cursor = GREATEST(cursor, $5)
WHERE id = $1 AND finished_at IS NULL
RETURNING id;

-- name: run_finish
UPDATE reconcile_runs SET finished_at = now(), error = $2
WHERE id = $1 AND finished_at IS NULL
RETURNING id, trigger, started_at, finished_at, checked, resolved, flagged, cursor, error;

-- name: runs_last
SELECT id, trigger, started_at, finished_at, checked, resolved, flagged, cursor, error
FROM reconcile_runs ORDER BY id DESC LIMIT $1;

-- name: advisory_lock
-- A cross-process mutex by name (e.g. one relayer key shared by several workers).
SELECT pg_advisory_lock(hashtextextended($1, 0));

-- name: advisory_unlock
SELECT pg_advisory_unlock(hashtextextended($1, 0));

-- name: mark_delivered
-- The answer of a settled sale was handed to its transport.
UPDATE payments SET delivered_at = now(), redelivery_until = NULL WHERE id = $1 AND delivered_at IS NULL;

-- name: take_redelivery
-- Lease the redelivery of a sale never delivered: one retry at a time serves it (the lease lapses after $3
-- seconds if that retry dies). A sale its own request settled must be $2 seconds old (that request may
-- still be answering); one booked without its request (reconciliation, a retry: journal memos $4) has no
-- request left. No row back: not redeliverable.
UPDATE payments SET redelivery_until = now() + make_interval(secs => $3)
WHERE id = $1 AND state = 'settled' AND delivered_at IS NULL
  AND (settled_at <= now() - make_interval(secs => $2)
       OR EXISTS (SELECT 1 FROM journal_entries je WHERE je.payment_id = $1 AND je.memo = ANY($4::text[])))
  AND (redelivery_until IS NULL OR redelivery_until < now())
RETURNING id;

-- name: drop_redelivery
-- The redelivery could not serve (no data right now): a later retry may try again.
UPDATE payments SET redelivery_until = NULL WHERE id = $1 AND delivered_at IS NULL;
