-- 0010: refunds (ledger/refunds.py).
--
-- 1. A batch-settlement payer's cooperative refund: the unspent part of its deposit sent back on chain, in one
--    multicall that first claims what the channel was charged. Refunded deposit money was never ours: no account
--    moves, `batch_refunds` keeps what was sent and what came of it.
-- 2. An operator's refund of one sale: a reversal of its settlement entry (revenue debited) and a row in
--    `payment_refunds`. A sale whose money we hold (settled, or a voucher claimed on chain) is owed back to the
--    payer (`payable:refunds:<network>:<payer>` credited; the operator sends it). A voucher sale not yet claimed
--    is never collected instead: its payment becomes `refunded`, its receivable is credited, and the channel's
--    `refunded_atomic` lowers every later claim of the channel (the settler claims charged - refunded; the payer
--    keeps that money in its channel).

-- ---------------------------------------------------------------------------------------------
-- The `refunded` state: a voucher sale refunded before its channel's claim. accepted -> refunded only.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE payments DROP CONSTRAINT payments_state_check;
ALTER TABLE payments ADD CONSTRAINT payments_state_check CHECK (state IN
    ('claimed', 'verified', 'served', 'settling', 'settled', 'failed', 'expired', 'released',
     'accepted', 'claimed_onchain', 'refunded'));

INSERT INTO payment_transitions (from_state, to_state) VALUES ('accepted', 'refunded');

-- What operator refunds took off the channel's charged total before any claim: a claim of the channel is for
-- charged - refunded. It only grows.
ALTER TABLE batch_channels ADD COLUMN refunded_atomic numeric(78, 0) NOT NULL DEFAULT 0
    CHECK (refunded_atomic >= 0 AND refunded_atomic <= charged_atomic);

CREATE FUNCTION wg_batch_refunded_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.refunded_atomic < OLD.refunded_atomic THEN
        RAISE EXCEPTION 'batch channel % : refunded never decreases', OLD.channel_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER batch_channels_refunded_guard BEFORE UPDATE OF refunded_atomic ON batch_channels
    FOR EACH ROW EXECUTE FUNCTION wg_batch_refunded_grows();

-- ---------------------------------------------------------------------------------------------
-- payment_refunds: one per refunded sale (a second refund of it meets the UNIQUE key), with the reversal entry
-- that booked it and who asked why. Append-only.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE payment_refunds (
    id             bigserial PRIMARY KEY,
    payment_id     bigint NOT NULL UNIQUE REFERENCES payments (id),
    kind           text NOT NULL CHECK (kind IN ('payable', 'voucher_unclaimed')),
    amount_atomic  numeric(78, 0) NOT NULL CHECK (amount_atomic > 0),
    account        text NOT NULL,  -- what the reversal credited: the payable, or the batch receivable
    asset          text NOT NULL,  -- <network>/<token>, as the journal spells it
    entry_id       bigint NOT NULL UNIQUE REFERENCES journal_entries (id),
    reason         text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    actor          text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'payable') = (account LIKE 'payable:refunds:%'))
);

CREATE TRIGGER payment_refunds_append_only BEFORE UPDATE OR DELETE ON payment_refunds
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER payment_refunds_no_truncate BEFORE TRUNCATE ON payment_refunds
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();

-- A payment becomes `refunded` only with its refund, checked at commit (as `settled` and `accepted` are).
CREATE FUNCTION wg_refunded_has_refund() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM payment_refunds WHERE payment_id = NEW.id AND kind = 'voucher_unclaimed') THEN
        RAISE EXCEPTION 'payment % : refunded without its refund', NEW.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER payments_refunded_booked AFTER UPDATE ON payments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.state = 'refunded' AND OLD.state IS DISTINCT FROM 'refunded')
    EXECUTE FUNCTION wg_refunded_has_refund();

-- ---------------------------------------------------------------------------------------------
-- A claim recorded on a channel with refunded sales. record_claim (ledger/channels.py) raises the channel's
-- claimed total, moves the accepted vouchers whose ceiling is within it to claimed_onchain, then inserts the
-- claim's batch_transactions row. The claimed total is charged - refunded, so the vouchers booked after a refunded
-- one sit above it by what was refunded below them: a voucher's place in the claims is its ceiling less the
-- refunded sales under it. This moves those the claimed total covers, under the same claim, in the same
-- transaction, so the sweep finds them claimed.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION wg_batch_claim_covers_refunded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE payments pay SET state = 'claimed_onchain', tx_hash = NEW.tx_hash, error_reason = NULL
    FROM batch_vouchers v JOIN batch_channels c ON c.channel_id = v.channel_id
    WHERE v.payment_id = pay.id AND pay.state = 'accepted' AND c.network = NEW.network AND c.refunded_atomic > 0
          AND v.max_claimable_atomic - (
              SELECT COALESCE(sum(r.amount_atomic), 0)
              FROM payment_refunds r JOIN batch_vouchers rv ON rv.payment_id = r.payment_id
              WHERE r.kind = 'voucher_unclaimed' AND rv.channel_id = v.channel_id
                    AND rv.max_claimable_atomic < v.max_claimable_atomic
          ) <= c.claimed_atomic;
    RETURN NULL;
END $$;

CREATE TRIGGER batch_transactions_cover_refunded AFTER INSERT ON batch_transactions
    FOR EACH ROW WHEN (NEW.kind = 'claim') EXECUTE FUNCTION wg_batch_claim_covers_refunded();

-- ---------------------------------------------------------------------------------------------
-- batch_refunds: each cooperative refund transaction, written before it is broadcast and resolved once from its
-- receipt: refunded (the Refunded event's amount), failed (reverted) or dropped (never on chain). Its claim part
-- (when the channel was charged more than the chain had claimed) is also written ahead as a claim in
-- batch_pending_tx, so the settler books it from the receipt if this process dies first.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE batch_refunds (
    tx_hash              text PRIMARY KEY CHECK (tx_hash ~ '^0x[0-9a-f]{64}$'),
    channel_id           text NOT NULL REFERENCES batch_channels (channel_id),
    network              text NOT NULL,
    payer                text NOT NULL,
    requested_atomic     numeric(78, 0) CHECK (requested_atomic > 0),  -- NULL: everything not charged
    claim_atomic         numeric(78, 0) CHECK (claim_atomic > 0),  -- the claimed total its claim part set; NULL: none
    refund_nonce         numeric(78, 0) NOT NULL CHECK (refund_nonce >= 0),  -- the nonce the Refund was signed for
    created_at           timestamptz NOT NULL DEFAULT now(),
    outcome              text CHECK (outcome IN ('refunded', 'failed', 'dropped')),
    refunded_atomic      numeric(78, 0) CHECK (refunded_atomic > 0),  -- paid back to the payer
    balance_after_atomic numeric(78, 0) CHECK (balance_after_atomic >= 0),  -- the channel's balance after it
    gas_cost_atomic      numeric(78, 0) CHECK (gas_cost_atomic >= 0),
    resolved_at          timestamptz,
    CHECK ((resolved_at IS NULL) = (outcome IS NULL)),
    CHECK ((outcome = 'refunded') = (refunded_atomic IS NOT NULL AND balance_after_atomic IS NOT NULL))
);
CREATE INDEX batch_refunds_channel ON batch_refunds (channel_id, created_at);
CREATE INDEX batch_refunds_open ON batch_refunds (network) WHERE resolved_at IS NULL;

-- Written once, resolved once.
CREATE FUNCTION wg_batch_refund_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.tx_hash, NEW.channel_id, NEW.network, NEW.payer, NEW.requested_atomic, NEW.claim_atomic,
        NEW.refund_nonce, NEW.created_at)
       IS DISTINCT FROM (OLD.tx_hash, OLD.channel_id, OLD.network, OLD.payer, OLD.requested_atomic,
                         OLD.claim_atomic, OLD.refund_nonce, OLD.created_at)
       OR OLD.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION 'batch refund % : only its outcome may be written, once', OLD.tx_hash
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER batch_refunds_guard BEFORE UPDATE ON batch_refunds
    FOR EACH ROW EXECUTE FUNCTION wg_batch_refund_guard();
CREATE TRIGGER batch_refunds_no_delete BEFORE DELETE ON batch_refunds
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER batch_refunds_no_truncate BEFORE TRUNCATE ON batch_refunds
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();
