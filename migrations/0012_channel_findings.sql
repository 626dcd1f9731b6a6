-- 0012: reconcile findings about batch-settlement channels and the settler's claim and sweep transactions.
-- A finding was always about one payment; a channel's on-chain claimed total or a claim's receipt belongs to
-- no single payment. A finding now has exactly one subject: a payment (as before), a channel, or a recorded
-- batch transaction; its kinds are those of its subject. Everything else about findings (acknowledge, close,
-- the actions' trail, one row per subject and kind) stays as it was.

ALTER TABLE reconcile_flags
    ALTER COLUMN payment_id DROP NOT NULL,
    ADD COLUMN channel_id    text REFERENCES batch_channels (channel_id),
    ADD COLUMN batch_tx_hash text REFERENCES batch_transactions (tx_hash),
    ADD COLUMN network       text,             -- a channel or transaction finding's network (a payment has its own)
    ADD COLUMN amount_atomic numeric(78, 0);   -- what a channel or transaction finding puts at stake

ALTER TABLE reconcile_flags DROP CONSTRAINT reconcile_flags_kind_check;
ALTER TABLE reconcile_flags ADD CONSTRAINT reconcile_flags_subject CHECK (
    num_nonnulls(payment_id, channel_id, batch_tx_hash) = 1
    AND (payment_id IS NOT NULL OR network IS NOT NULL)
);
ALTER TABLE reconcile_flags ADD CONSTRAINT reconcile_flags_kind_check CHECK (
    (payment_id IS NOT NULL AND kind IN (
        'settlement_not_on_chain',        -- the ledger says settled; the chain has no such transfer
        'settlement_mismatch',            -- the transaction exists but does not move what was booked
        'chain_transfer_not_recorded',    -- the chain moved a payment we claimed but never booked
        'settlement_unknown'))            -- still undecidable (e.g. no RPC for its network)
    OR (channel_id IS NOT NULL AND kind IN (
        'channel_claimed_mismatch',       -- the contract's totalClaimed is not what our recorded claims add up to
        'channel_claimed_above_charged',  -- the contract shows more claimed than we ever charged on the channel
        'channel_underfunded',            -- the channel's balance is below what we charged: accepted sales at risk
        'channel_withdrawal_unclaimed'))  -- a withdrawal can finalize before our next claim of what is owed
    OR (batch_tx_hash IS NOT NULL AND kind IN (
        'batch_tx_not_on_chain',          -- a recorded claim or sweep the chain does not know
        'batch_tx_reverted',              -- a recorded claim or sweep whose receipt failed
        'batch_tx_mismatch'))             -- a recorded sweep whose Settled events moved another amount
);

-- One row per (subject, kind), as (payment_id, kind) already is; NULLs never collide.
ALTER TABLE reconcile_flags ADD CONSTRAINT reconcile_flags_channel_kind UNIQUE (channel_id, kind);
ALTER TABLE reconcile_flags ADD CONSTRAINT reconcile_flags_batch_tx_kind UNIQUE (batch_tx_hash, kind);

-- The recorded claims and sweeps whose receipts reconcile found as booked: each is read once (a devnet's
-- or a node's history is long), unless `reconcile --all` asks again. One that is not confirmed gets no row
-- and is read again next run.
CREATE TABLE batch_tx_audits (
    tx_hash     text PRIMARY KEY REFERENCES batch_transactions (tx_hash),
    block       bigint NOT NULL CHECK (block >= 0),
    checked_at  timestamptz NOT NULL DEFAULT now()
);
