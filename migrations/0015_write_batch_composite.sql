-- The group-commit function of 0013 taking one array of composite values,
-- one per write, instead of 31 positional arrays sliced per write (issue 17).
-- The contract is unchanged (see 0009 and 0013): each write runs in its own
-- subtransaction, so it stands or fails alone and its row says why
-- (`err_code`: the SQLSTATE); the heads of the writes that stood are written
-- after the loop in one statement, the newest per stream.
--
-- What changes besides the shape:
-- - A write may carry no stored answer (`caller` NULL): `store::append`,
--   which appends inside its caller's transaction, goes through this same
--   function instead of a statement of its own.
-- - Each row also reports the global positions of the write's events, in
--   sequence order (`positions`), for callers without a stored answer.
--
-- The answer of a write comes split at its events' positions
-- (`answer_pieces`: one more piece than events); the positions are put
-- between the pieces here. The service side of that splice is
-- `src/store/answer.rs`.
--
-- The old function is dropped, not overloaded (as in 0010): a binary still
-- calling it fails loudly.
DROP FUNCTION dispatch_write_batch(
    text[], text[], text[], integer[], text[], text[], text[], bigint[], text[],
    integer[], integer[], integer[], integer[], text[], text[], text[], text[],
    text[], timestamptz[], timestamptz[], bigint[], text[], text[], text[],
    text[], uuid[], text[], text[], bytea[], text[], text[]);

-- One event to append, hash-chained and keyed by the service.
CREATE TYPE dispatch_event AS (
    sequence bigint,
    event_type text,
    event_version text,
    payload text,
    metadata text,
    event_id uuid,
    prev_hash text,
    hash text,
    key_id text,
    mac text
);

-- A job's row in the door index.
CREATE TYPE dispatch_door AS (
    job_id text,
    site_id text,
    door_id text,
    state text,
    technician_id text,
    completed_at timestamptz,
    updated_at timestamptz
);

-- One command's write: its stored answer (`caller` NULL: none), the API key
-- it must find active (`key_check`, the key's SHA-256; NULL: none), its
-- events on one stream with the stream's head after them (no events: the
-- stream fields are NULL), and its door row (NULL: none).
CREATE TYPE dispatch_write AS (
    caller text,
    idempotency_key text,
    request_hash text,
    status integer,
    answer_pieces bytea[],
    key_check text,
    stream_type text,
    stream_id text,
    head_sequence bigint,
    head_hash text,
    events dispatch_event[],
    door dispatch_door
);

CREATE FUNCTION dispatch_write_batch(writes dispatch_write[])
RETURNS TABLE (write_no integer, err_code text, err_message text, answer bytea, positions bigint[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    w dispatch_write;
    stood integer[] := '{}';
BEGIN
    FOR k IN 1 .. coalesce(cardinality(writes), 0) LOOP
        write_no := k;
        w := writes[k];
        BEGIN
            IF w.key_check IS NOT NULL THEN
                PERFORM dispatch_require_active_key(w.key_check);
            END IF;
            WITH appended AS (
                INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                    payload, metadata, event_id, prev_hash, hash, key_id, mac)
                SELECT w.stream_type, w.stream_id, e.sequence, e.event_type, e.event_version,
                       e.payload::json, e.metadata::json, e.event_id, e.prev_hash, e.hash, e.key_id, e.mac
                FROM unnest(w.events) WITH ORDINALITY
                     AS e(sequence, event_type, event_version, payload, metadata,
                          event_id, prev_hash, hash, key_id, mac, n)
                ORDER BY e.n
                RETURNING sequence, global_position),
            placed AS (
                SELECT coalesce(array_agg(global_position ORDER BY sequence), '{}') AS p FROM appended),
            door AS (
                INSERT INTO job_doors (job_id, site_id, door_id, state, technician_id, completed_at, updated_at)
                SELECT (w.door).job_id, (w.door).site_id, (w.door).door_id, (w.door).state,
                       (w.door).technician_id, (w.door).completed_at, (w.door).updated_at
                WHERE (w.door).job_id IS NOT NULL
                ON CONFLICT (job_id) DO UPDATE SET state = EXCLUDED.state,
                    technician_id = EXCLUDED.technician_id,
                    completed_at = COALESCE(EXCLUDED.completed_at, job_doors.completed_at),
                    updated_at = EXCLUDED.updated_at),
            stored AS (
                INSERT INTO idempotency_records (caller, idempotency_key, request_hash, status_code, response_body)
                SELECT w.caller, w.idempotency_key, w.request_hash, w.status,
                       w.answer_pieces[1] || COALESCE((
                           SELECT string_agg(convert_to(placed.p[i]::text, 'UTF8') || w.answer_pieces[i + 1],
                                             ''::bytea ORDER BY i)
                           FROM generate_subscripts(placed.p, 1) AS i), ''::bytea)
                FROM placed
                WHERE w.caller IS NOT NULL
                RETURNING response_body)
            SELECT placed.p, (SELECT response_body FROM stored) INTO positions, answer FROM placed;
            IF cardinality(w.events) > 0 THEN
                stood := stood || k;
            END IF;
            err_code := NULL;
            err_message := NULL;
        EXCEPTION WHEN OTHERS THEN
            err_code := SQLSTATE;
            err_message := SQLERRM;
            answer := NULL;
            positions := NULL;
        END;
        RETURN NEXT;
    END LOOP;
    IF cardinality(stood) > 0 THEN
        INSERT INTO stream_heads (aggregate_type, aggregate_id, sequence, hash)
        SELECT DISTINCT ON ((writes[s.i]).stream_type, (writes[s.i]).stream_id)
               (writes[s.i]).stream_type, (writes[s.i]).stream_id,
               (writes[s.i]).head_sequence, (writes[s.i]).head_hash
        FROM unnest(stood) AS s(i)
        ORDER BY (writes[s.i]).stream_type, (writes[s.i]).stream_id, (writes[s.i]).head_sequence DESC
        ON CONFLICT (aggregate_type, aggregate_id)
        DO UPDATE SET sequence = EXCLUDED.sequence, hash = EXCLUDED.hash;
    END IF;
END
$$;
