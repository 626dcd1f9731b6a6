-- 0014: which gateway process holds an open claim, so that the retry of a payment whose request died can be
-- told apart from one still being worked on, at once, without waiting for reconciliation's grace period.
--
-- A gateway process (each worker of each replica) registers in `gateway_instances` and renews its lease
-- every few seconds; it is alive while `lease_until` is ahead. Each claim it makes names it in
-- `claim_leases`; when its request ends, however it ends, the lease's instance is cleared (NULL: nobody holds
-- the claim any more, so a retry may resolve it). A claim without a lease row was made before this migration.
-- A retry that finds the holder gone takes the lease over (compare-and-set on the instance), and from then on
-- the dead (or merely stalled) holder's own writes to the claim are refused (ledger/claims.py's `lease`).

CREATE TABLE gateway_instances (
    id           bigserial PRIMARY KEY,
    host         text NOT NULL,     -- host name, boot id and pid namespace: where `pid` means this process
    pid          integer NOT NULL,
    pid_started  bigint,            -- the process's start time in clock ticks since boot (Linux), NULL elsewhere
    started_at   timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz NOT NULL
);

CREATE TABLE claim_leases (
    payment_id   bigint PRIMARY KEY REFERENCES payments (id),
    instance_id  bigint REFERENCES gateway_instances (id) ON DELETE SET NULL,  -- NULL: its request ended
    taken_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claim_leases_instance ON claim_leases (instance_id);
