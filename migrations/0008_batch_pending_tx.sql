-- 0008: the batch settler's transactions written ahead. A claim or sweep's hash is stored before the
-- transaction leaves the process (ledger/batch_recovery.py), with what it carries; a settler that dies
-- between the transaction and its record (batch_transactions) finds it here on its next run, reads the
-- receipt and records it then. Without it a sweep that landed unrecorded left its sales claimed forever:
-- the chain had nothing left to sweep, so no later sweep would move them.

CREATE TABLE batch_pending_tx (
    tx_hash      text PRIMARY KEY CHECK (tx_hash ~ '^0x[0-9a-f]{64}$'),
    network      text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('claim', 'settle')),  -- as batch_transactions.kind
    -- a claim: {"claims": [[channel_id, total_atomic as text], ...]}; a sweep: {"receiver": ..., "token": ...}
    rows         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    -- recorded: booked in batch_transactions; failed: mined and reverted; dropped: never on chain
    outcome      text CHECK (outcome IN ('recorded', 'failed', 'dropped')),
    CHECK ((resolved_at IS NULL) = (outcome IS NULL)),
    CHECK ((kind = 'claim') = (rows ? 'claims')),
    CHECK ((kind = 'settle') = (rows ? 'receiver' AND rows ? 'token'))
);
CREATE INDEX batch_pending_tx_open ON batch_pending_tx (network, created_at) WHERE resolved_at IS NULL;

-- Written once, resolved once: what a transaction carried and how it ended never change afterwards.
CREATE FUNCTION wg_batch_pending_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.tx_hash, NEW.network, NEW.kind, NEW.rows, NEW.created_at)
       IS DISTINCT FROM (OLD.tx_hash, OLD.network, OLD.kind, OLD.rows, OLD.created_at)
       OR OLD.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION 'batch pending transaction % : only its resolution may be written, once', OLD.tx_hash
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER batch_pending_tx_guard BEFORE UPDATE ON batch_pending_tx
    FOR EACH ROW EXECUTE FUNCTION wg_batch_pending_guard();
CREATE TRIGGER batch_pending_tx_no_delete BEFORE DELETE ON batch_pending_tx
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER batch_pending_tx_no_truncate BEFORE TRUNCATE ON batch_pending_tx
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();
