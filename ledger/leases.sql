-- Claim leases (migration 0014): which gateway process holds an open claim. Run by ledger/leases.py; the
-- claim itself takes its lease in `claim_payment` (queries.sql).

-- name: instance_register
-- A gateway process announces itself with a lease of $4 seconds, renewed by its heartbeat. Processes silent
-- for a day are forgotten on the way (their claims' leases turn NULL: nobody holds them).
WITH forgotten AS (DELETE FROM gateway_instances WHERE lease_until < now() - interval '1 day')
INSERT INTO gateway_instances (host, pid, pid_started, lease_until)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
RETURNING id;

-- name: instance_renew
-- The heartbeat; no row back: the instance was forgotten (it must register again).
UPDATE gateway_instances SET lease_until = now() + make_interval(secs => $2) WHERE id = $1 RETURNING id;

-- name: instance_retire
-- A process that stops: its claims' leases turn NULL at once.
DELETE FROM gateway_instances WHERE id = $1;

-- name: lease_take
-- Instance $2 takes over the lease of payment $1, still in state $4, from the holder the caller found gone:
-- instance $3, or nobody ($3 NULL: no lease row, or one whose request ended). No row back: the payment moved,
-- or someone else took it first. The payment row is locked, so takers and the state machine go one at a time.
WITH open AS (SELECT id FROM payments WHERE id = $1 AND state = $4 FOR UPDATE)
INSERT INTO claim_leases (payment_id, instance_id) SELECT id, $2 FROM open
ON CONFLICT (payment_id) DO UPDATE SET instance_id = EXCLUDED.instance_id, taken_at = now()
    WHERE claim_leases.instance_id IS NOT DISTINCT FROM $3::bigint
RETURNING payment_id;

-- name: lease_end
-- The request holding payment $1's lease ended (the claim may still be open, e.g. its settlement pending).
UPDATE claim_leases SET instance_id = NULL WHERE payment_id = $1 AND instance_id = $2;
