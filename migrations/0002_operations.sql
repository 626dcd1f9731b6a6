-- 0002: what an operator needs beside the settlement ledger: running balances per account (kept by
-- the database, so `ledger verify` can compare them with the postings), reconciliation against the
-- chain (findings and runs), payer bans, and stream sharing set at run time by the admin API.

-- ---------------------------------------------------------------------------------------------
-- account_balances: the running total of every (account, asset), maintained by a trigger on each
-- posting. `ledger verify` recomputes it from the postings; a posting edited behind the triggers'
-- back (a superuser with triggers disabled) no longer matches.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE account_balances (
    account        text NOT NULL,
    asset          text NOT NULL,
    balance_atomic numeric(78, 0) NOT NULL,
    postings       bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, asset)
);

CREATE FUNCTION wg_account_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_balances (account, asset, balance_atomic, postings)
    VALUES (NEW.account, NEW.asset, NEW.amount_atomic, 1)
    ON CONFLICT (account, asset) DO UPDATE
        SET balance_atomic = account_balances.balance_atomic + EXCLUDED.balance_atomic,
            postings = account_balances.postings + 1,
            updated_at = now();
    RETURN NULL;
END $$;

CREATE TRIGGER journal_postings_balance AFTER INSERT ON journal_postings
    FOR EACH ROW EXECUTE FUNCTION wg_account_balance();

INSERT INTO account_balances (account, asset, balance_atomic, postings)
SELECT account, asset, sum(amount_atomic), count(*) FROM journal_postings GROUP BY account, asset;

-- ---------------------------------------------------------------------------------------------
-- Reconciliation: findings where the ledger and the chain disagree, one row per (payment, kind),
-- so re-running reconcile updates `last_seen_at` instead of adding duplicates; and one row per run,
-- whose `cursor` lets a long run over settled payments resume where it stopped.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE reconcile_flags (
    id            bigserial PRIMARY KEY,
    payment_id    bigint NOT NULL REFERENCES payments (id),
    kind          text NOT NULL CHECK (kind IN (
                      'settlement_not_on_chain',      -- the ledger says settled; the chain has no such transfer
                      'settlement_mismatch',          -- the transaction exists but does not move what was booked
                      'chain_transfer_not_recorded',  -- the chain moved a payment we claimed but never booked
                      'settlement_unknown'            -- still undecidable (e.g. no RPC for its network)
                  )),
    detail        text NOT NULL,
    tx_hash       text,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    UNIQUE (payment_id, kind)
);
CREATE INDEX reconcile_flags_open ON reconcile_flags (kind) WHERE resolved_at IS NULL;

CREATE TABLE reconcile_runs (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    trigger      text NOT NULL CHECK (trigger IN ('cli', 'schedule', 'admin')),
    checked      integer NOT NULL DEFAULT 0,
    resolved     integer NOT NULL DEFAULT 0,
    flagged      integer NOT NULL DEFAULT 0,
    cursor       bigint NOT NULL DEFAULT 0,  -- the highest settled payment id already audited
    error        text
);

-- ---------------------------------------------------------------------------------------------
-- Operator controls, read by every worker: banned payers (refused before verification) and stream
-- sharing (over the settings' defaults). A change NOTIFYs `worldgate_admin` so workers reload now.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE payer_bans (
    payer      text PRIMARY KEY,  -- as the payment names it: EVM addresses lowercased, Solana base58 as is
    reason     text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stream_sharing (
    stream_id  text PRIMARY KEY,
    sharing    text NOT NULL CHECK (sharing IN ('ok', 'maintenance', 'not_shared')),
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION wg_notify_admin() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('worldgate_admin', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER payer_bans_notify AFTER INSERT OR UPDATE OR DELETE ON payer_bans
    FOR EACH STATEMENT EXECUTE FUNCTION wg_notify_admin();
CREATE TRIGGER stream_sharing_notify AFTER INSERT OR UPDATE OR DELETE ON stream_sharing
    FOR EACH STATEMENT EXECUTE FUNCTION wg_notify_admin();
