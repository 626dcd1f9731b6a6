-- 0005: whether a settled sale's answer reached its caller.
-- In sync mode a sale settles before its answer leaves, so a crash, a lost answer or a client gone in that
-- window leaves a payer charged without data. `delivered_at` is set once the answer is handed to the
-- transport; a settled payment without it may be served again to the same payment (never charged again).
-- `redelivery_until` is the lease of the retry doing that, so concurrent retries serve it once.
ALTER TABLE payments ADD COLUMN delivered_at timestamptz;
ALTER TABLE payments ADD COLUMN redelivery_until timestamptz;
-- Sales booked before this column existed were answered (or are past helping): none is redelivered.
UPDATE payments SET delivered_at = updated_at WHERE state = 'settled';
