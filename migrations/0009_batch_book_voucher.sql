-- 0009: a voucher is booked in one statement, after its data is ready.
--
-- Until now a voucher took three transactions: reserve the channel (and claim the payment) before the handler,
-- advance the payment, accept it after, and every sale's postings updated the same two account_balances rows.
-- Measured under load, the database's share of that was most of a voucher's cost. Now the handler runs first
-- (the channel checked but not locked), and `wg_batch_book_voucher` does the rest in one statement under the
-- channel's row lock (`wg_batch_book_vouchers` books the vouchers of concurrent requests together, one
-- statement and one commit for all of them): the cumulative rule re-checked, the payment inserted already accepted, the voucher kept,
-- the channel charged, the sale booked. Nothing is written for a voucher whose handler fails, and of two
-- requests racing on one channel the second is refused after the first is booked: charged still moves only
-- after data, once per price. The per-channel reservation of 0007 is gone with it, and account_balances is
-- kept in shards so concurrent sales do not queue on one row.

ALTER TABLE batch_channels DROP COLUMN reserved_payment_id, DROP COLUMN reserved_atomic, DROP COLUMN reserved_until;
-- Every booking updates its channel's row: with no index over charged_atomic (the settler's owed-channels index
-- named it in its predicate) and room left on the page, that update is a heap-only one, touching no index. The
-- settler's query, once a claim interval, scans the channels instead.
DROP INDEX batch_channels_owed;
ALTER TABLE batch_channels SET (fillfactor = 70);

-- What may be charged on a channel: its balance, less a pending withdrawal (the payer may finalize it once its
-- delay ends, taking min(amount, balance - claimed) at that time), never less than what is already claimed.
CREATE FUNCTION wg_batch_chargeable(c batch_channels) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN c.withdraw_requested_at > 0
                THEN GREATEST(c.claimed_atomic, c.balance_atomic - c.withdrawal_amount_atomic)
                ELSE c.balance_atomic END
$$;

-- Book a served voucher. Returns (verdict, booked_id): 'accepted' with the payment, or a refusal with no row
-- written: 'channel_not_found', 'cumulative_amount_mismatch' (max is not charged + price),
-- 'cumulative_exceeds_balance', 'unsettled_cap_exceeded' ($18, when not NULL, caps the unsettled value of all
-- channels), 'voucher_already_used' (its payment key is held or consumed), and, with $19 false (do not wait
-- for the channel's lock), 'channel_locked'. $15..$17 are the acceptance entry's
-- postings (the caller checks they book the price); the database checks they balance at commit.
CREATE FUNCTION wg_batch_book_voucher(
    p_channel_id text, p_payment_key text, p_scheme_id text, p_network text, p_asset text, p_payer text,
    p_pay_to text, p_amount numeric, p_route text, p_resource text, p_stream text, p_settlement_mode text,
    p_max_claimable numeric, p_signature text,
    p_accounts text[], p_assets text[], p_amounts numeric[], p_max_unsettled numeric, p_wait boolean DEFAULT true
) RETURNS TABLE (verdict text, booked_id bigint) LANGUAGE plpgsql AS $$
DECLARE
    c batch_channels%ROWTYPE;
    pid bigint;
    entry bigint;
BEGIN
    IF p_wait THEN
        SELECT * INTO c FROM batch_channels WHERE channel_id = p_channel_id FOR UPDATE;
    ELSE
        SELECT * INTO c FROM batch_channels WHERE channel_id = p_channel_id FOR UPDATE SKIP LOCKED;
        IF NOT FOUND AND EXISTS (SELECT 1 FROM batch_channels WHERE channel_id = p_channel_id) THEN
            RETURN QUERY SELECT 'channel_locked', NULL::bigint;  -- held elsewhere (a refund, a claim): book it alone
            RETURN;
        END IF;
    END IF;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'channel_not_found', NULL::bigint;
        RETURN;
    END IF;
    IF (c.network, c.token, c.receiver) IS DISTINCT FROM (p_network, p_asset, p_pay_to) THEN
        RAISE EXCEPTION 'payment % does not match channel %''s terms', p_payment_key, p_channel_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF p_max_claimable <> c.charged_atomic + p_amount THEN
        RETURN QUERY SELECT 'cumulative_amount_mismatch', NULL::bigint;
        RETURN;
    END IF;
    IF p_max_claimable > wg_batch_chargeable(c) THEN
        RETURN QUERY SELECT 'cumulative_exceeds_balance', NULL::bigint;
        RETURN;
    END IF;
    IF p_max_unsettled IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('worldgate:batch:unsettled-cap', 0));
        IF (SELECT COALESCE(sum(unsettled_atomic), 0) FROM batch_channels) + p_amount > p_max_unsettled THEN
            RETURN QUERY SELECT 'unsettled_cap_exceeded', NULL::bigint;
            RETURN;
        END IF;
    END IF;
    -- Born accepted: it was verified (the signature) and served (the handler) before this statement, and the
    -- payments triggers log its one step, NULL -> accepted.
    INSERT INTO payments (payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route, resource,
                          stream, settlement_mode, state)
    VALUES (p_payment_key, p_scheme_id, p_network, p_asset, p_payer, p_pay_to, p_amount, p_route, p_resource,
            p_stream, p_settlement_mode, 'accepted')
    ON CONFLICT (payment_key) DO NOTHING
    RETURNING id INTO pid;
    IF pid IS NULL THEN
        -- a key released under 0007's reservations (nothing was charged) is claimed again and walked to accepted
        UPDATE payments SET state = 'claimed', claims = claims + 1, route = p_route, resource = p_resource,
                            stream = p_stream, error_reason = NULL
        WHERE payment_key = p_payment_key AND state = 'released'
        RETURNING id INTO pid;
        IF pid IS NULL THEN
            RETURN QUERY SELECT 'voucher_already_used', NULL::bigint;
            RETURN;
        END IF;
        UPDATE payments SET state = 'verified' WHERE id = pid;
        UPDATE payments SET state = 'served' WHERE id = pid;
        UPDATE payments SET state = 'accepted' WHERE id = pid;
    END IF;
    INSERT INTO batch_vouchers (payment_id, channel_id, max_claimable_atomic, signature)
    VALUES (pid, p_channel_id, p_max_claimable, p_signature)
    ON CONFLICT (payment_id) DO UPDATE SET signature = EXCLUDED.signature;
    UPDATE batch_channels
    SET charged_atomic = p_max_claimable, signed_max_atomic = p_max_claimable, signature = p_signature,
        unsettled_atomic = unsettled_atomic + p_amount
    WHERE channel_id = p_channel_id;
    INSERT INTO journal_entries (payment_id, kind) VALUES (pid, 'settlement') RETURNING id INTO entry;
    INSERT INTO journal_postings (entry_id, account, asset, amount_atomic)  -- last: it updates shared balances
    SELECT entry, account, asset, amount FROM unnest(p_accounts, p_assets, p_amounts) AS l (account, asset, amount);
    RETURN QUERY SELECT 'accepted', pid;
END $$;

-- Several served vouchers booked in one statement and one transaction, in the order given (the caller sorts
-- them by channel, so concurrent groups lock channels in one order): each as wg_batch_book_voucher books it,
-- a refusal refusing only its own. A voucher whose channel another transaction holds (a cooperative refund
-- waiting on its chain transaction, a claim being recorded) is not waited for: it comes back
-- 'channel_locked', writing nothing, and the caller books it alone, so one held channel never stalls a group. $15 holds each voucher's postings as a JSON array of [account, asset,
-- amount] (amounts as strings). Returns (n, verdict, booked_id), n the voucher's 1-based place in the arrays.
CREATE FUNCTION wg_batch_book_vouchers(
    p_channel_ids text[], p_payment_keys text[], p_scheme_ids text[], p_networks text[], p_assets text[],
    p_payers text[], p_pay_tos text[], p_amounts numeric[], p_routes text[], p_resources text[], p_streams text[],
    p_settlement_modes text[], p_max_claimables numeric[], p_signatures text[], p_postings text[],
    p_max_unsettled numeric
) RETURNS TABLE (n integer, verdict text, booked_id bigint) LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    accounts text[];
    assets text[];
    amounts numeric[];
    booked record;
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_channel_ids, 1), 0) LOOP
        SELECT array_agg(line->>0 ORDER BY o), array_agg(line->>1 ORDER BY o), array_agg((line->>2)::numeric ORDER BY o)
        INTO accounts, assets, amounts
        FROM jsonb_array_elements(p_postings[i]::jsonb) WITH ORDINALITY AS l (line, o);
        SELECT * INTO booked FROM wg_batch_book_voucher(
            p_channel_ids[i], p_payment_keys[i], p_scheme_ids[i], p_networks[i], p_assets[i], p_payers[i],
            p_pay_tos[i], p_amounts[i], p_routes[i], p_resources[i], p_streams[i], p_settlement_modes[i],
            p_max_claimables[i], p_signatures[i], accounts, assets, amounts, p_max_unsettled, false);
        n := i;
        verdict := booked.verdict;
        booked_id := booked.booked_id;
        RETURN NEXT;
    END LOOP;
END $$;

-- ---------------------------------------------------------------------------------------------
-- A payment is inserted `claimed` (it is claimed before its request is served), or, a voucher's, `accepted`
-- (booked once its data is ready, with its acceptance entry, checked at commit as an update to accepted is).
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION wg_payment_born() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state NOT IN ('claimed', 'accepted') THEN
        RAISE EXCEPTION 'a payment is inserted claimed or accepted, not %', NEW.state
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER payments_born BEFORE INSERT ON payments FOR EACH ROW EXECUTE FUNCTION wg_payment_born();

CREATE CONSTRAINT TRIGGER payments_accepted_booked_at_insert AFTER INSERT ON payments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.state = 'accepted')
    EXECUTE FUNCTION wg_accepted_has_entry();

-- ---------------------------------------------------------------------------------------------
-- account_balances in shards: each posting adds to its (account, asset) row of the inserting backend's shard,
-- so concurrent transactions posting to one account (every sale credits its revenue account) rarely wait on
-- one another's row lock until commit. An account's balance is the sum of its shards (ledger verify sums them).
-- ---------------------------------------------------------------------------------------------
ALTER TABLE account_balances ADD COLUMN shard smallint NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 15);
ALTER TABLE account_balances DROP CONSTRAINT account_balances_pkey, ADD PRIMARY KEY (account, asset, shard);

CREATE OR REPLACE FUNCTION wg_account_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_balances (account, asset, shard, balance_atomic, postings)
    VALUES (NEW.account, NEW.asset, pg_backend_pid() % 16, NEW.amount_atomic, 1)
    ON CONFLICT (account, asset, shard) DO UPDATE
        SET balance_atomic = account_balances.balance_atomic + EXCLUDED.balance_atomic,
            postings = account_balances.postings + 1,
            updated_at = now();
    RETURN NULL;
END $$;

-- ---------------------------------------------------------------------------------------------
-- A voucher sale's delivery is marked on its voucher (one small row, updated in place) rather than on its
-- payment, whose every update rewrites six indexes; a sale marked before keeps its mark.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE batch_vouchers ADD COLUMN delivered_at timestamptz;
ALTER TABLE batch_vouchers SET (fillfactor = 80);  -- room on the page for that in-place update
UPDATE batch_vouchers v SET delivered_at = pay.delivered_at FROM payments pay
WHERE pay.id = v.payment_id AND pay.delivered_at IS NOT NULL;
