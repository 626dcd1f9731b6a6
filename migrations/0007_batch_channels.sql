-- 0007: x402 `batch-settlement`. A payer deposits once into an on-chain channel; each paid request carries a
-- cumulative voucher (channelId, maxClaimableAmount, signature). We accept a voucher only if its ceiling is
-- exactly what the channel was charged so far plus this request's price, book it as revenue against a
-- receivable at once (`accepted`), claim many channels' vouchers in one transaction (`claimed_onchain`) and
-- sweep them to the receiver in another (`settled`). ledger/channels.py is the only writer of these tables.

-- ---------------------------------------------------------------------------------------------
-- The batch states. A batch sale goes claimed -> verified -> served as an `exact` one does, then
-- served -> accepted -> claimed_onchain -> settled; before acceptance it may be released or expired as today.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE payments DROP CONSTRAINT payments_state_check;
ALTER TABLE payments ADD CONSTRAINT payments_state_check CHECK (state IN
    ('claimed', 'verified', 'served', 'settling', 'settled', 'failed', 'expired', 'released',
     'accepted', 'claimed_onchain'));

INSERT INTO payment_transitions (from_state, to_state) VALUES
    ('served', 'accepted'), ('accepted', 'claimed_onchain'), ('claimed_onchain', 'settled');

-- ---------------------------------------------------------------------------------------------
-- batch_channels: one row per channel, our mirror of its on-chain state plus what we charged on it.
--   balance_atomic, claimed_atomic, withdraw_*, refund_nonce: the chain's, as last mirrored
--   charged_atomic: the cumulative total of the vouchers we accepted, i.e. what the payer owes us in all
--   signed_max_atomic, signature: the last accepted voucher, which a claim needs
--   unsettled_atomic: accepted or claimed but not yet swept to the receiver (the receivable, per channel)
--   reserved_*: the one request in flight on the channel (vouchers are serialized per channel)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE batch_channels (
    channel_id               text PRIMARY KEY CHECK (channel_id ~ '^0x[0-9a-f]{64}$'),
    network                  text NOT NULL,
    token                    text NOT NULL,
    payer                    text NOT NULL,
    payer_authorizer         text NOT NULL,
    receiver                 text NOT NULL,
    receiver_authorizer      text NOT NULL,
    withdraw_delay           integer NOT NULL CHECK (withdraw_delay BETWEEN 900 AND 2592000),
    salt                     text NOT NULL,
    balance_atomic           numeric(78, 0) NOT NULL CHECK (balance_atomic >= 0),
    claimed_atomic           numeric(78, 0) NOT NULL DEFAULT 0 CHECK (claimed_atomic >= 0),
    charged_atomic           numeric(78, 0) NOT NULL DEFAULT 0,
    signed_max_atomic        numeric(78, 0),
    signature                text,
    unsettled_atomic         numeric(78, 0) NOT NULL DEFAULT 0 CHECK (unsettled_atomic >= 0),
    withdraw_requested_at    bigint NOT NULL DEFAULT 0 CHECK (withdraw_requested_at >= 0),  -- unix s, 0 = none
    withdrawal_amount_atomic numeric(78, 0) NOT NULL DEFAULT 0 CHECK (withdrawal_amount_atomic >= 0),
    refund_nonce             numeric(78, 0) NOT NULL DEFAULT 0 CHECK (refund_nonce >= 0),
    reserved_payment_id      bigint REFERENCES payments (id),
    reserved_atomic          numeric(78, 0),
    reserved_until           timestamptz,
    mirrored_at              timestamptz NOT NULL DEFAULT now(),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CHECK (claimed_atomic <= charged_atomic),
    CHECK ((signed_max_atomic IS NULL) = (signature IS NULL)),
    CHECK (signed_max_atomic IS NULL OR charged_atomic <= signed_max_atomic),
    CHECK (unsettled_atomic <= charged_atomic),
    CHECK ((reserved_payment_id IS NULL) = (reserved_until IS NULL)
           AND (reserved_payment_id IS NULL) = (reserved_atomic IS NULL)),
    CHECK (reserved_atomic IS NULL OR reserved_atomic > 0)
);
CREATE INDEX batch_channels_owed ON batch_channels (network) WHERE charged_atomic > claimed_atomic;
CREATE INDEX batch_channels_reserved ON batch_channels (reserved_until) WHERE reserved_until IS NOT NULL;
CREATE INDEX batch_channels_receiver ON batch_channels (network, receiver, token);

-- The terms are the channel's id (its EIP-712 hash): never edited. What we charged, the chain's claimed
-- total and the voucher ceiling only grow.
CREATE FUNCTION wg_batch_channel_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.channel_id, NEW.network, NEW.token, NEW.payer, NEW.payer_authorizer, NEW.receiver,
        NEW.receiver_authorizer, NEW.withdraw_delay, NEW.salt)
       IS DISTINCT FROM
       (OLD.channel_id, OLD.network, OLD.token, OLD.payer, OLD.payer_authorizer, OLD.receiver,
        OLD.receiver_authorizer, OLD.withdraw_delay, OLD.salt) THEN
        RAISE EXCEPTION 'batch channel % : its terms are immutable', OLD.channel_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.charged_atomic < OLD.charged_atomic OR NEW.claimed_atomic < OLD.claimed_atomic
       OR NEW.signed_max_atomic < OLD.signed_max_atomic THEN
        RAISE EXCEPTION 'batch channel % : charged, claimed and the voucher ceiling never decrease', OLD.channel_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER batch_channels_guard BEFORE UPDATE ON batch_channels
    FOR EACH ROW EXECUTE FUNCTION wg_batch_channel_guard();
CREATE TRIGGER batch_channels_no_delete BEFORE DELETE ON batch_channels
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER batch_channels_no_truncate BEFORE TRUNCATE ON batch_channels
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();

-- ---------------------------------------------------------------------------------------------
-- batch_vouchers: the voucher behind each batch payment (payment_key = '<network>:<channel>:<max>', so a
-- replayed voucher meets the payments' UNIQUE key). A payment re-claimed after a release keeps its row.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE batch_vouchers (
    payment_id            bigint PRIMARY KEY REFERENCES payments (id),
    channel_id            text NOT NULL REFERENCES batch_channels (channel_id),
    max_claimable_atomic  numeric(78, 0) NOT NULL CHECK (max_claimable_atomic > 0),
    signature             text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel_id, max_claimable_atomic)
);

CREATE FUNCTION wg_batch_voucher_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.payment_id, NEW.channel_id, NEW.max_claimable_atomic)
       IS DISTINCT FROM (OLD.payment_id, OLD.channel_id, OLD.max_claimable_atomic) THEN
        RAISE EXCEPTION 'batch voucher of payment % : only its signature may change', OLD.payment_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER batch_vouchers_guard BEFORE UPDATE ON batch_vouchers
    FOR EACH ROW EXECUTE FUNCTION wg_batch_voucher_guard();
CREATE TRIGGER batch_vouchers_no_delete BEFORE DELETE ON batch_vouchers
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER batch_vouchers_no_truncate BEFORE TRUNCATE ON batch_vouchers
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();

-- ---------------------------------------------------------------------------------------------
-- batch_transactions: each claim or sweep transaction recorded once (a settler retrying after a crash
-- records nothing twice), with the journal entry that booked its gas (and, for a sweep, its amount).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE batch_transactions (
    tx_hash          text PRIMARY KEY,
    network          text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('claim', 'settle')),
    receiver         text,
    token            text,
    amount_atomic    numeric(78, 0) NOT NULL CHECK (amount_atomic >= 0),
    gas_cost_atomic  numeric(78, 0) CHECK (gas_cost_atomic >= 0),
    relayer          text,
    entry_id         bigint REFERENCES journal_entries (id),
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'settle') = (receiver IS NOT NULL AND token IS NOT NULL))
);

CREATE TRIGGER batch_transactions_append_only BEFORE UPDATE OR DELETE ON batch_transactions
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER batch_transactions_no_truncate BEFORE TRUNCATE ON batch_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();

-- A batch payment moves to `accepted` only with its acceptance (settlement) entry, checked at commit,
-- as `settled` already is (0003).
CREATE FUNCTION wg_accepted_has_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM journal_entries WHERE payment_id = NEW.id AND kind = 'settlement'
    ) THEN
        RAISE EXCEPTION 'payment % : accepted without its acceptance (settlement) journal entry', NEW.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER payments_accepted_booked AFTER UPDATE ON payments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.state = 'accepted' AND OLD.state IS DISTINCT FROM 'accepted')
    EXECUTE FUNCTION wg_accepted_has_entry();

CREATE INDEX payments_batch_booked ON payments (state) WHERE state IN ('accepted', 'claimed_onchain');
