-- 0017: the operator's transfer of a refund owed, booked against its payable.
--
-- An operator refund of a sale whose money we hold credits `payable:refunds:<network>:<payer>` (0010); the
-- operator sends that amount from payTo, since the gateway holds no payTo key. `worldgate ledger refund-sent`
-- then finds the transfer on chain (exactly the amount, of the sale's asset, from its payTo to its payer) and
-- books it here: one `adjustment` entry debiting the payable and crediting payTo's on-chain account, and one
-- `refund_transfers` row naming the transaction. One transfer per refund, and a transaction pays one refund.

CREATE TABLE refund_transfers (
    id             bigserial PRIMARY KEY,
    refund_id      bigint NOT NULL UNIQUE REFERENCES payment_refunds (id),
    network        text NOT NULL,
    tx_hash        text NOT NULL,
    sender         text NOT NULL,  -- the sale's payTo, where the money left
    amount_atomic  numeric(78, 0) NOT NULL CHECK (amount_atomic > 0),
    entry_id       bigint NOT NULL UNIQUE REFERENCES journal_entries (id),
    actor          text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (network, tx_hash)
);

-- Only a refund owed (kind 'payable') is paid by a transfer, and for exactly what it owes.
CREATE FUNCTION wg_refund_transfer_matches() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM payment_refunds
        WHERE id = NEW.refund_id AND kind = 'payable' AND amount_atomic = NEW.amount_atomic
    ) THEN
        RAISE EXCEPTION 'refund % : a transfer pays a payable refund, for its amount', NEW.refund_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER refund_transfers_match BEFORE INSERT ON refund_transfers
    FOR EACH ROW EXECUTE FUNCTION wg_refund_transfer_matches();
CREATE TRIGGER refund_transfers_append_only BEFORE UPDATE OR DELETE ON refund_transfers
    FOR EACH ROW EXECUTE FUNCTION wg_refuse_change();
CREATE TRIGGER refund_transfers_no_truncate BEFORE TRUNCATE ON refund_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION wg_refuse_change();
