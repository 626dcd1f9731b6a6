-- 0013: the time machine's cold layer (adapters/history). Every distinct snapshot of a recorded stream, in
-- month partitions (native declarative partitioning: TimescaleDB is not installable here), plus the backfill's
-- progress. Nothing here touches the ledger's tables.

CREATE TABLE IF NOT EXISTS history_snapshots (
    stream      text        NOT NULL,
    t           timestamptz NOT NULL,   -- when this state took effect: its fetch (recorded) or its hour (backfilled)
    seen_until  timestamptz NOT NULL,   -- the last fetch that found it unchanged: gaps are measured from here
    observed_at timestamptz,            -- the newest record's own time, as the upstream says
    fetched_at  timestamptz NOT NULL,
    checksum    bytea       NOT NULL,   -- sha256 of the records' canonical JSON
    origin      text        NOT NULL CHECK (origin IN ('recorded', 'backfill')),
    count       integer     NOT NULL CHECK (count >= 0),
    raw_bytes   integer     NOT NULL,   -- the records' JSON, uncompressed (for the size figures)
    records     bytea       NOT NULL,   -- the JSON array of records, as sold; Postgres compresses it (below)
    PRIMARY KEY (stream, t)
) PARTITION BY RANGE (t);

-- Compression of the records column: lz4 where the server has it (decompresses at GB/s, so a history read costs
-- little more than reading the rows), else pglz. Postgres compresses a row from its TOAST threshold (about 2 kB)
-- up: the many small snapshots (an ISS position, a Kp reading) stay as they are, a few hundred bytes each.
DO $$
BEGIN
    ALTER TABLE history_snapshots ALTER COLUMN records SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'history_snapshots.records: lz4 is not available here; pglz compresses it';
END
$$;

-- Time-ordered appends make a BRIN index on t a few pages per partition; per-stream reads use the primary key.
CREATE INDEX IF NOT EXISTS history_snapshots_t_brin ON history_snapshots USING brin (t) WITH (pages_per_range = 32);

-- The month partition holding `p_at`, created when first needed; its records column gets the parent's
-- compression. Writers create it in a transaction of its own before they write (adapters/history/store.py):
-- creating a partition locks the parent, which a writer already inserting would hold. Two creating at once wait
-- on one lock; the second then finds the table by querying pg_class (a fresh snapshot: the name lookup's
-- cache may not have seen the other's commit yet), and a duplicate is let pass all the same.
CREATE OR REPLACE FUNCTION history_partition(p_at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lower_utc timestamp := date_trunc('month', p_at AT TIME ZONE 'UTC');
    part_name text := 'history_snapshots_' || to_char(lower_utc, 'YYYYMM');
BEGIN
    IF to_regclass(part_name) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('worldgate.history.partitions'));
        PERFORM 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = part_name AND n.nspname = current_schema();
        IF NOT FOUND THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF history_snapshots FOR VALUES FROM (%L) TO (%L)',
                    part_name, lower_utc AT TIME ZONE 'UTC', (lower_utc + interval '1 month') AT TIME ZONE 'UTC'
                );
            EXCEPTION WHEN duplicate_table THEN
                RETURN part_name;
            END;
            IF (SELECT attcompression FROM pg_attribute
                WHERE attrelid = 'history_snapshots'::regclass AND attname = 'records') = 'l' THEN
                EXECUTE format('ALTER TABLE %I ALTER COLUMN records SET COMPRESSION lz4', part_name);
            END IF;
        END IF;
    END IF;
    RETURN part_name;
END
$$;

-- One snapshot, stored unless it repeats the state around it: the snapshot in force at `t` or the next one
-- having the same checksum means nothing changed (two replicas fetching the same payload, a flush
-- replayed, a backfill rerun); the one in force then only has `seen_until` moved. True when stored.
-- Serialized per stream, so two writers cannot both decide "new".
CREATE OR REPLACE FUNCTION history_record(
    p_stream text, p_t timestamptz, p_observed_at timestamptz, p_fetched_at timestamptz, p_checksum bytea,
    p_origin text, p_count integer, p_raw_bytes integer, p_records bytea
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    -- a backfilled snapshot was in force at its own time, not when the backfill happened to run
    sighted timestamptz := CASE WHEN p_origin = 'backfill' THEN p_t ELSE greatest(p_t, p_fetched_at) END;
    before_t timestamptz;
    before_checksum bytea;
    after_checksum bytea;
BEGIN
    PERFORM history_partition(p_t);
    PERFORM pg_advisory_xact_lock(hashtext('worldgate.history:' || p_stream));
    SELECT t, checksum INTO before_t, before_checksum
        FROM history_snapshots WHERE stream = p_stream AND t <= p_t ORDER BY t DESC LIMIT 1;
    IF before_checksum = p_checksum THEN
        UPDATE history_snapshots SET seen_until = greatest(seen_until, sighted)
            WHERE stream = p_stream AND t = before_t;
        RETURN false;
    END IF;
    SELECT checksum INTO after_checksum
        FROM history_snapshots WHERE stream = p_stream AND t > p_t ORDER BY t LIMIT 1;
    IF after_checksum = p_checksum THEN
        RETURN false;  -- a later fetch of the same state committed first: it already stands for this one
    END IF;
    INSERT INTO history_snapshots
        (stream, t, seen_until, observed_at, fetched_at, checksum, origin, count, raw_bytes, records)
        VALUES (p_stream, p_t, sighted, p_observed_at, p_fetched_at, p_checksum, p_origin,
                p_count, p_raw_bytes, p_records)
        ON CONFLICT (stream, t) DO NOTHING;
    RETURN FOUND;
END
$$;

-- Retention: drop whole month partitions that end at or before `cutoff` (no row-by-row DELETE, no bloat).
CREATE OR REPLACE FUNCTION history_drop_before(cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part text;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'history_snapshots' AND c.relname ~ '^history_snapshots_[0-9]{6}$'
        ORDER BY c.relname
    LOOP
        IF (to_date(substr(part, 19), 'YYYYMM') + interval '1 month')::timestamp AT TIME ZONE 'UTC' <= cutoff THEN
            EXECUTE format('DROP TABLE IF EXISTS %I', part);
            RETURN NEXT part;
        END IF;
    END LOOP;
END
$$;

-- The backfill's progress: a fetch group's UTC day once all of it was fetched and stored (reruns skip it).
CREATE TABLE IF NOT EXISTS history_backfill (
    source    text        NOT NULL,   -- the fetch group (adapter name), e.g. open-meteo.grid
    day       date        NOT NULL,
    snapshots integer     NOT NULL,   -- how many it stored that day (0 on a rerun that found them all)
    done_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, day)
);
