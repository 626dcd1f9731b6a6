-- 0015: the operator's console (issue 18): an audit log of every admin action, bans with an expiry and bans of
-- client addresses, and the admin sessions seen.

-- ---------------------------------------------------------------------------------------------
-- Every change an operator makes (or the gateway makes on its own, as `system`), append-only.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE admin_audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,              -- the admin token's subject, or 'system'
    action  text NOT NULL,              -- e.g. sharing.set, ban.add, ban.remove, reconcile.run, stream.fetch
    target  text,                       -- what it acted on: a stream, a payer or address, a finding, a network
    detail  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX admin_audit_action ON admin_audit (action, id);

CREATE FUNCTION wg_admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit is append-only';
END $$;

CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION wg_admin_audit_append_only();

-- ---------------------------------------------------------------------------------------------
-- Bans: a payer ban may end on its own; a client address (or network) may be banned too.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE payer_bans ADD COLUMN expires_at timestamptz;  -- NULL: until lifted

CREATE TABLE address_bans (
    address    cidr PRIMARY KEY,        -- one address (a /32 or /128) or a network
    reason     text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);

CREATE TRIGGER address_bans_notify AFTER INSERT OR UPDATE OR DELETE ON address_bans
    FOR EACH STATEMENT EXECUTE FUNCTION wg_notify_admin();

-- ---------------------------------------------------------------------------------------------
-- Admin sessions seen (a token's hash, never the token): the console's "connected users".
-- ---------------------------------------------------------------------------------------------
CREATE TABLE admin_sessions (
    session       text PRIMARY KEY,     -- the first 16 hex digits of the token's SHA-256
    subject       text NOT NULL,
    via           text NOT NULL CHECK (via IN ('browser', 'bearer')),
    client        text,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX admin_sessions_last_seen ON admin_sessions (last_seen_at);
