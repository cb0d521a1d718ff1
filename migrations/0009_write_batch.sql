-- Group commit of command writes (docs/03, "Group commit").
--
-- A command's write is what its decision leaves: its events (hash-chained,
-- sequence order), the stream head, the job's door-index row and the stored
-- answer, whose event positions are filled in here (the answer comes split at
-- them: `answer_pieces`, one more piece than events). The service hands the
-- writes of concurrent commands to this function together: one round trip and
-- one commit for all of them. Each write runs in its own subtransaction, so it
-- is still all-or-nothing and a write that fails (a stale stream version, a
-- used idempotency key, a revoked API key) leaves nothing and does not abort
-- the others: its row says why (`err_code`: the SQLSTATE) and has no answer.
--
-- Per write k (1-based, arrays of one entry per write): the caller, its
-- idempotency key, the request's hash, the answer's status; `key_check`, the
-- SHA-256 of an API key to require active (NULL: none); the stream; its head
-- after the events; events `ev_from[k]..ev_to[k]` and answer pieces
-- `piece_from[k]..piece_to[k]` of the flattened event and piece arrays; the
-- door row (`door_job` NULL: none).
CREATE FUNCTION dispatch_write_batch(
    w_caller text[], w_idem_key text[], w_request_hash text[], w_status integer[],
    w_key_check text[],
    w_stream_type text[], w_stream_id text[], w_head_sequence bigint[], w_head_hash text[],
    w_ev_from integer[], w_ev_to integer[], w_piece_from integer[], w_piece_to integer[],
    w_door_job text[], w_door_site text[], w_door_door text[], w_door_state text[],
    w_door_technician text[], w_door_completed timestamptz[], w_door_updated timestamptz[],
    w_ev_sequence bigint[], w_ev_type text[], w_ev_version text[], w_ev_payload text[],
    w_ev_metadata text[], w_ev_id uuid[], w_ev_prev_hash text[], w_ev_hash text[],
    w_answer_pieces bytea[])
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
                                    payload, metadata, event_id, prev_hash, hash)
                SELECT w_stream_type[k], w_stream_id[k], e.sequence, e.event_type, e.event_version,
                       e.payload::json, e.metadata::json, e.event_id, e.prev_hash, e.hash
                FROM unnest(w_ev_sequence[f:t], w_ev_type[f:t], w_ev_version[f:t], w_ev_payload[f:t],
                            w_ev_metadata[f:t], w_ev_id[f:t], w_ev_prev_hash[f:t], w_ev_hash[f:t])
                     WITH ORDINALITY AS e(sequence, event_type, event_version, payload, metadata,
                                          event_id, prev_hash, hash, n)
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
