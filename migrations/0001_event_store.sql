-- The append-only event store. Columns of postgres-es 0.5's `events` table,
-- plus the global order (global_position, tx_id), the envelope's identity and
-- the per-aggregate hash chain. See docs/03 for why the service writes through
-- its own repository instead of postgres-es's.
CREATE TABLE events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence > 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         json        NOT NULL,
    metadata        json        NOT NULL,
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    event_id        uuid        NOT NULL,
    prev_hash       text        NOT NULL,
    hash            text        NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position ON events (global_position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);
-- Projectors read (tx_id, global_position) > checkpoint below the snapshot's xmin.
CREATE INDEX events_tx_order ON events (tx_id, global_position);

-- The head of every stream: its last sequence and hash. Written in the same
-- transaction as the events, so deleting the newest events of a stream is
-- detected as well as changing or reordering any of them.
CREATE TABLE stream_heads (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL,
    hash           text   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- The trail is append-only even to a careless operator: UPDATE, DELETE and
-- TRUNCATE on events are refused by the database itself.
CREATE FUNCTION events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- Projectors wake on this channel (with a polling fallback).
CREATE FUNCTION events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dispatch_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_insert
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
