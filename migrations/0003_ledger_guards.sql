-- 0003: close what `ledger verify` could only detect after the fact.
-- 1. A payment becomes `settled` only with its settlement entry, checked at commit.
-- 2. Running balances change only through the posting trigger, never by a direct statement.
-- 3. The payment event log is written only by the payments trigger: no forged events.
-- 4. Journal entries are found by payment without a scan.

CREATE FUNCTION wg_settled_has_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM journal_entries WHERE payment_id = NEW.id AND kind = 'settlement'
    ) THEN
        RAISE EXCEPTION 'payment % : settled without a settlement journal entry', NEW.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

-- Deferred to commit: claims.settle marks the payment and posts its entry in one transaction.
CREATE CONSTRAINT TRIGGER payments_settled_booked AFTER UPDATE ON payments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.state = 'settled' AND OLD.state IS DISTINCT FROM 'settled')
    EXECUTE FUNCTION wg_settled_has_entry();

-- pg_trigger_depth() is 1 inside a trigger fired by a client's statement, and 2 or more inside a
-- trigger fired by a statement that another trigger ran: only the latter may touch these tables.
CREATE FUNCTION wg_only_from_triggers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION '% is written by the ledger''s triggers only: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER account_balances_guard BEFORE INSERT OR UPDATE OR DELETE ON account_balances
    FOR EACH ROW EXECUTE FUNCTION wg_only_from_triggers();
CREATE TRIGGER account_balances_no_truncate BEFORE TRUNCATE ON account_balances
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER payment_events_insert_guard BEFORE INSERT ON payment_events
    FOR EACH ROW EXECUTE FUNCTION wg_only_from_triggers();

CREATE INDEX journal_entries_payment ON journal_entries (payment_id);
