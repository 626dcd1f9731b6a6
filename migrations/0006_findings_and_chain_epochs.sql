-- ---------------------------------------------------------------------------------------------
-- Findings an operator works through: reconcile raises them (reconcile_flags), an operator
-- acknowledges ("seen, on it") and closes them with a note. A closed finding stays closed when
-- reconcile sees it again, unless reconcile itself had resolved it. Every action is kept.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE reconcile_flags
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN acknowledged_by text,
    ADD COLUMN closed_by       text,   -- the operator who closed it; NULL when reconcile resolved it
    ADD COLUMN note            text;   -- the operator's last note

CREATE TABLE reconcile_flag_actions (
    id       bigserial PRIMARY KEY,
    flag_id  bigint NOT NULL REFERENCES reconcile_flags (id),
    action   text NOT NULL CHECK (action IN ('acknowledge', 'close')),
    note     text NOT NULL CHECK (length(note) BETWEEN 1 AND 2000),
    actor    text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconcile_flag_actions_flag ON reconcile_flag_actions (flag_id, id);

-- The trail is append-only, like the journal.
CREATE FUNCTION reconcile_flag_actions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reconcile_flag_actions is append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER reconcile_flag_actions_append_only BEFORE UPDATE OR DELETE ON reconcile_flag_actions
    FOR EACH ROW EXECUTE FUNCTION reconcile_flag_actions_append_only();

-- ---------------------------------------------------------------------------------------------
-- Which instance of a local devnet the ledger's sales were made on. A devnet restarted fresh
-- (the Solana one always is) forgets every earlier transaction while the ledger keeps them; an
-- epoch starts each time the ledger sees a new instance of a network, at the next payment id.
-- A payment belongs to the latest epoch of its network that starts at or before its id.
-- Real networks never get an epoch, so nothing about them changes.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE chain_epochs (
    id               bigserial PRIMARY KEY,
    network          text NOT NULL,
    instance_id      text NOT NULL CHECK (length(instance_id) BETWEEN 1 AND 200),
    first_payment_id bigint NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chain_epochs_network ON chain_epochs (network, first_payment_id);
