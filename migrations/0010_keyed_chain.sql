-- The keyed chain, and a database that refuses to rewrite heads and stored
-- answers (issue 16; docs/03 "Keyed chain", docs/04, docs/07).
--
-- 1. Every new event carries `key_id` and `mac`: HMAC-SHA-256, with a secret
--    that is not in the database, over the event's stream, sequence, key id
--    and `hash` (which covers `prev_hash`, so the MACs key the whole chain).
--    Events written before this migration keep NULL in both ("unkeyed"); a
--    signed checkpoint outside the database vouches for them.
ALTER TABLE events ADD COLUMN key_id text NULL;
ALTER TABLE events ADD COLUMN mac text NULL;

-- 2. The group-commit function of 0009 with the two columns. A function is
--    identified by its argument types: CREATE OR REPLACE with two more
--    arrays would add an overload beside the old one, and a binary still
--    calling the old one would go on writing unkeyed events. The old one is
--    dropped, so such a binary fails loudly instead. Otherwise unchanged
--    (see 0009 for its contract): `w_ev_key_id` and `w_ev_mac` are flattened
--    like the other event arrays.
DROP FUNCTION dispatch_write_batch(
    text[], text[], text[], integer[], text[], text[], text[], bigint[], text[],
    integer[], integer[], integer[], integer[], text[], text[], text[], text[],
    text[], timestamptz[], timestamptz[], bigint[], text[], text[], text[],
    text[], uuid[], text[], text[], bytea[]);

CREATE FUNCTION dispatch_write_batch(
    w_caller text[], w_idem_key text[], w_request_hash text[], w_status integer[],
    w_key_check text[],
    w_stream_type text[], w_stream_id text[], w_head_sequence bigint[], w_head_hash text[],
    w_ev_from integer[], w_ev_to integer[], w_piece_from integer[], w_piece_to integer[],
    w_door_job text[], w_door_site text[], w_door_door text[], w_door_state text[],
    w_door_technician text[], w_door_completed timestamptz[], w_door_updated timestamptz[],
    w_ev_sequence bigint[], w_ev_type text[], w_ev_version text[], w_ev_payload text[],
    w_ev_metadata text[], w_ev_id uuid[], w_ev_prev_hash text[], w_ev_hash text[],
    w_answer_pieces bytea[], w_ev_key_id text[], w_ev_mac text[])
RETURNS TABLE (write_no integer, err_code text, err_message text, answer bytea)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    f integer;
    t integer;
    pieces bytea[];
BEGIN
    FOR k IN 1 .. coalesce(cardinality(w_caller), 0) LOOP
        write_no := k;
        f := w_ev_from[k];
        t := w_ev_to[k];
        pieces := w_answer_pieces[w_piece_from[k] : w_piece_to[k]];
        BEGIN
            IF w_key_check[k] IS NOT NULL THEN
                PERFORM dispatch_require_active_key(w_key_check[k]);
            END IF;
            WITH appended AS (
                INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                    payload, metadata, event_id, prev_hash, hash, key_id, mac)
                SELECT w_stream_type[k], w_stream_id[k], e.sequence, e.event_type, e.event_version,
                       e.payload::json, e.metadata::json, e.event_id, e.prev_hash, e.hash, e.key_id, e.mac
                FROM unnest(w_ev_sequence[f:t], w_ev_type[f:t], w_ev_version[f:t], w_ev_payload[f:t],
                            w_ev_metadata[f:t], w_ev_id[f:t], w_ev_prev_hash[f:t], w_ev_hash[f:t],
                            w_ev_key_id[f:t], w_ev_mac[f:t])
                     WITH ORDINALITY AS e(sequence, event_type, event_version, payload, metadata,
                                          event_id, prev_hash, hash, key_id, mac, n)
                ORDER BY e.n
                RETURNING sequence, global_position),
            head AS (
                INSERT INTO stream_heads (aggregate_type, aggregate_id, sequence, hash)
                SELECT w_stream_type[k], w_stream_id[k], w_head_sequence[k], w_head_hash[k]
                WHERE t >= f
                ON CONFLICT (aggregate_type, aggregate_id)
                DO UPDATE SET sequence = EXCLUDED.sequence, hash = EXCLUDED.hash),
            door AS (
                INSERT INTO job_doors (job_id, site_id, door_id, state, technician_id, completed_at, updated_at)
                SELECT w_door_job[k], w_door_site[k], w_door_door[k], w_door_state[k], w_door_technician[k],
                       w_door_completed[k], w_door_updated[k]
                WHERE w_door_job[k] IS NOT NULL
                ON CONFLICT (job_id) DO UPDATE SET state = EXCLUDED.state,
                    technician_id = EXCLUDED.technician_id,
                    completed_at = COALESCE(EXCLUDED.completed_at, job_doors.completed_at),
                    updated_at = EXCLUDED.updated_at)
            INSERT INTO idempotency_records (caller, idempotency_key, request_hash, status_code, response_body)
            SELECT w_caller[k], w_idem_key[k], w_request_hash[k], w_status[k],
                   pieces[1] || COALESCE((
                       SELECT string_agg(convert_to(a.global_position::text, 'UTF8') || pieces[a.i + 1],
                                         ''::bytea ORDER BY a.i)
                       FROM (SELECT global_position, (row_number() OVER (ORDER BY sequence))::int AS i
                             FROM appended) a), ''::bytea)
            RETURNING response_body INTO answer;
            err_code := NULL;
            err_message := NULL;
        EXCEPTION WHEN OTHERS THEN
            err_code := SQLSTATE;
            err_message := SQLERRM;
            answer := NULL;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- 3. Stream heads only move forward, and only onto the stream's last event.
--    The head is written in the same statement as the events (a CTE beside
--    the INSERT INTO events), and data-modifying CTEs share one snapshot: a
--    BEFORE trigger on stream_heads would not see the events being inserted.
--    A row-level AFTER trigger runs once the whole statement is done and
--    sees its effects, so the check is AFTER. One backward index probe of
--    the events' primary key per head write: the stream's last event, which
--    the head must be (sequence and hash). That refuses a head moved back, a
--    head on a (sequence, hash) no event has, and a head inserted below the
--    stream's last event. A head with no event at all is allowed only at
--    sequence 0 (an empty stream). DELETE and TRUNCATE are refused.
--    The table owner can still disable these triggers; what that leaves is
--    found by verification against the signed checkpoints (docs/07).
CREATE FUNCTION stream_heads_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    last_seq bigint;
    last_hash text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.aggregate_type IS DISTINCT FROM OLD.aggregate_type
           OR NEW.aggregate_id IS DISTINCT FROM OLD.aggregate_id THEN
            RAISE EXCEPTION 'stream_heads: a head cannot move to another stream'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.sequence < OLD.sequence THEN
            RAISE EXCEPTION 'stream_heads: the head of % % cannot move back from % to %',
                OLD.aggregate_type, OLD.aggregate_id, OLD.sequence, NEW.sequence
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    SELECT e.sequence, e.hash INTO last_seq, last_hash
    FROM events e
    WHERE e.aggregate_type = NEW.aggregate_type AND e.aggregate_id = NEW.aggregate_id
    ORDER BY e.sequence DESC
    LIMIT 1;
    IF last_seq IS NULL THEN
        IF NEW.sequence <> 0 THEN
            RAISE EXCEPTION 'stream_heads: % % has no event %',
                NEW.aggregate_type, NEW.aggregate_id, NEW.sequence
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    ELSIF last_seq <> NEW.sequence OR last_hash <> NEW.hash THEN
        RAISE EXCEPTION 'stream_heads: the head of % % must be its last event (%), not % with another hash',
            NEW.aggregate_type, NEW.aggregate_id, last_seq, NEW.sequence
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER stream_heads_follow_events
    AFTER INSERT OR UPDATE ON stream_heads
    FOR EACH ROW EXECUTE FUNCTION stream_heads_guard();

CREATE FUNCTION stream_heads_no_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stream_heads: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER stream_heads_no_delete
    BEFORE DELETE ON stream_heads
    FOR EACH ROW EXECUTE FUNCTION stream_heads_no_delete();

CREATE TRIGGER stream_heads_no_truncate
    BEFORE TRUNCATE ON stream_heads
    FOR EACH STATEMENT EXECUTE FUNCTION stream_heads_no_delete();

-- 4. Stored answers are not rewritten. The code writes an answer in one of
--    two ways: the group-commit writer inserts it complete; a command outside
--    the writer (app::commands, `idempotent`) first claims its key with a
--    provisional row (status_code 0, an empty body) and completes that row
--    with its answer in the same transaction. That completion is the one
--    UPDATE allowed: from the provisional row to an answer, caller, key,
--    request hash and creation time unchanged. Nothing in the code deletes a
--    stored answer; DELETE and TRUNCATE are refused.
CREATE FUNCTION idempotency_records_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.status_code = 0 AND OLD.response_body = ''::bytea
       AND NEW.status_code <> 0
       AND NEW.caller = OLD.caller AND NEW.idempotency_key = OLD.idempotency_key
       AND NEW.request_hash = OLD.request_hash AND NEW.created_at = OLD.created_at THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'idempotency_records: stored answers are not rewritten (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER idempotency_records_no_rewrite
    BEFORE UPDATE OR DELETE ON idempotency_records
    FOR EACH ROW EXECUTE FUNCTION idempotency_records_guard();

CREATE TRIGGER idempotency_records_no_truncate
    BEFORE TRUNCATE ON idempotency_records
    FOR EACH STATEMENT EXECUTE FUNCTION idempotency_records_guard();
