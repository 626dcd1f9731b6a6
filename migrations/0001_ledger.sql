-- 0001: the settlement ledger. Payments and their state machine, an append-only event log, and a
-- double-entry journal whose postings balance per entry and can never be edited.
-- Amounts are integers in atomic units (numeric(78,0) holds any uint256), never floats.
-- The rules are enforced here, in triggers and constraints, and checked again in ledger/*.py:
-- a bug in one layer is caught by the other.

-- ---------------------------------------------------------------------------------------------
-- payments: one row per payment key; the UNIQUE key is what makes a payment served at most once
-- across workers and replicas.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE payment_transitions (
    from_state text NOT NULL,
    to_state   text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);

-- claimed -> verified -> served -> settling -> settled is the paid path; released means nothing
-- was charged and the authorization may be presented again (a released key can be re-claimed).
INSERT INTO payment_transitions (from_state, to_state) VALUES
    ('claimed',  'verified'), ('claimed',  'released'), ('claimed',  'expired'),
    ('verified', 'served'),   ('verified', 'settling'), ('verified', 'released'), ('verified', 'expired'),
    ('served',   'settling'), ('served',   'released'), ('served',   'expired'),
    ('settling', 'settled'),  ('settling', 'failed'),
    ('released', 'claimed');

CREATE TABLE payments (
    id               bigserial PRIMARY KEY,
    payment_key      text NOT NULL UNIQUE,
    scheme_id        text NOT NULL,
    network          text NOT NULL,
    asset            text NOT NULL,
    payer            text NOT NULL,
    pay_to           text NOT NULL,
    amount_atomic    numeric(78, 0) NOT NULL CHECK (amount_atomic > 0),
    route            text NOT NULL,
    resource         text NOT NULL,
    stream           text,
    settlement_mode  text NOT NULL CHECK (settlement_mode IN ('sync', 'upfront', 'deferred')),
    state            text NOT NULL CHECK (state IN
                         ('claimed', 'verified', 'served', 'settling', 'settled', 'failed', 'expired', 'released')),
    valid_before     timestamptz,
    tx_hash          text,
    gas_cost_atomic  numeric(78, 0) CHECK (gas_cost_atomic >= 0),
    error_reason     text,
    claims           integer NOT NULL DEFAULT 1 CHECK (claims >= 1),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    settled_at       timestamptz,
    CHECK ((state = 'settled') = (settled_at IS NOT NULL)),
    CHECK (state <> 'settled' OR tx_hash IS NOT NULL)
);

CREATE INDEX payments_open ON payments (state, updated_at)
    WHERE state IN ('claimed', 'verified', 'served', 'settling');
CREATE INDEX payments_created_at ON payments (created_at);
CREATE INDEX payments_payer ON payments (payer);

CREATE TABLE payment_events (
    id          bigserial PRIMARY KEY,
    payment_id  bigint NOT NULL REFERENCES payments (id),
    from_state  text,
    to_state    text NOT NULL,
    reason      text,
    tx_hash     text,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX payment_events_payment ON payment_events (payment_id, id);

CREATE FUNCTION wg_payment_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.payment_key, NEW.scheme_id, NEW.network, NEW.asset, NEW.payer, NEW.pay_to, NEW.amount_atomic)
       IS DISTINCT FROM
       (OLD.payment_key, OLD.scheme_id, OLD.network, OLD.asset, OLD.payer, OLD.pay_to, OLD.amount_atomic) THEN
        RAISE EXCEPTION 'payment % : identity columns are immutable', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT EXISTS (
        SELECT 1 FROM payment_transitions WHERE from_state = OLD.state AND to_state = NEW.state
    ) THEN
        RAISE EXCEPTION 'payment % : illegal transition % -> %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER payments_guard BEFORE UPDATE ON payments FOR EACH ROW EXECUTE FUNCTION wg_payment_guard();

-- Every state a payment enters is logged by the database itself, so no code path can skip it.
CREATE FUNCTION wg_payment_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO payment_events (payment_id, from_state, to_state, reason, tx_hash)
        VALUES (NEW.id, NULL, NEW.state, NEW.error_reason, NEW.tx_hash);
    ELSIF NEW.state IS DISTINCT FROM OLD.state OR NEW.tx_hash IS DISTINCT FROM OLD.tx_hash THEN
        INSERT INTO payment_events (payment_id, from_state, to_state, reason, tx_hash)
        VALUES (NEW.id, OLD.state, NEW.state, NEW.error_reason, NEW.tx_hash);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER payments_log AFTER INSERT OR UPDATE ON payments FOR EACH ROW EXECUTE FUNCTION wg_payment_log();

CREATE FUNCTION wg_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER payment_events_append_only BEFORE UPDATE OR DELETE ON payment_events
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER payment_events_no_truncate BEFORE TRUNCATE ON payment_events
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();

-- ---------------------------------------------------------------------------------------------
-- journal: double entry. A posting's amount is signed (debit > 0, credit < 0); every entry sums to
-- zero per asset. Postings are immutable; a correction is a new entry that reverses an old one.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE journal_entries (
    id          bigserial PRIMARY KEY,
    payment_id  bigint REFERENCES payments (id),
    kind        text NOT NULL CHECK (kind IN ('settlement', 'reversal', 'adjustment')),
    reverses    bigint REFERENCES journal_entries (id),
    memo        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'reversal') = (reverses IS NOT NULL))
);
-- A payment is charged at most once, in the books as on the chain.
CREATE UNIQUE INDEX journal_one_settlement_per_payment ON journal_entries (payment_id) WHERE kind = 'settlement';

CREATE TABLE journal_postings (
    id             bigserial PRIMARY KEY,
    entry_id       bigint NOT NULL REFERENCES journal_entries (id),
    account        text NOT NULL,
    asset          text NOT NULL,
    amount_atomic  numeric(78, 0) NOT NULL CHECK (amount_atomic <> 0)
);
CREATE INDEX journal_postings_entry ON journal_postings (entry_id);
CREATE INDEX journal_postings_account ON journal_postings (account);

CREATE FUNCTION wg_assert_entry_balanced(entry bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    lines integer;
    unbalanced text;
BEGIN
    SELECT count(*) INTO lines FROM journal_postings WHERE entry_id = entry;
    IF lines < 2 THEN
        RAISE EXCEPTION 'journal entry % has % posting(s); double entry needs at least 2', entry, lines
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT string_agg(asset || ' off by ' || total, ', ') INTO unbalanced FROM (
        SELECT asset, sum(amount_atomic) AS total FROM journal_postings WHERE entry_id = entry GROUP BY asset
    ) per_asset WHERE total <> 0;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'journal entry % does not balance: %', entry, unbalanced USING ERRCODE = 'check_violation';
    END IF;
END $$;

CREATE FUNCTION wg_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wg_assert_entry_balanced(NEW.id);
    RETURN NULL;
END $$;

CREATE FUNCTION wg_posting_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wg_assert_entry_balanced(NEW.entry_id);
    RETURN NULL;
END $$;

-- Deferred to commit, so an entry and its postings are checked once they are all written.
CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wg_entry_balanced();
CREATE CONSTRAINT TRIGGER journal_postings_balanced AFTER INSERT ON journal_postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wg_posting_balanced();

CREATE TRIGGER journal_entries_immutable BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER journal_postings_immutable BEFORE UPDATE OR DELETE ON journal_postings
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER journal_postings_no_truncate BEFORE TRUNCATE ON journal_postings
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();
