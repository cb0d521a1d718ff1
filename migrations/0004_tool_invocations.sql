-- The tool-invocation log: one row per call of a tool, whatever its outcome
-- (ok, refused, approval required, error — refusals by the allowlist, the
-- rate limit and the input schemas included), over HTTP or MCP. Append-only
-- like the events. Each row is a record that validates against
-- schemas/tool_invocation.schema.json (see src/tools/log.rs).
CREATE TABLE tool_invocations (
    position        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Not unique: a client retrying one tool call may send its id again.
    invocation_id   uuid        NOT NULL,
    tool            text        NOT NULL CHECK (length(tool) BETWEEN 1 AND 100),
    actor           jsonb       NOT NULL,
    -- The key's name (actor.id), for `?actor=`.
    actor_id        text        NOT NULL,
    transport       text        NOT NULL CHECK (transport IN ('http', 'mcp')),
    idempotency_key text        CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    argument_digest text        NOT NULL CHECK (argument_digest ~ '^[0-9a-f]{64}$'),
    outcome         text        NOT NULL CHECK (outcome IN ('ok', 'refused', 'approval_required', 'error')),
    error_code      text        CHECK (error_code ~ '^[a-z_]+$'),
    http_status     integer     NOT NULL CHECK (http_status BETWEEN 100 AND 599),
    job_id          text        CHECK (length(job_id) BETWEEN 1 AND 200),
    approval_id     text        CHECK (length(approval_id) BETWEEN 1 AND 200),
    -- The events this call appended: [{event_id, event_type, sequence, global_position}].
    events          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    -- A stored answer replayed for a retried idempotency key (no new events).
    replayed        boolean     NOT NULL DEFAULT false,
    at              timestamptz NOT NULL
);

CREATE INDEX tool_invocations_job ON tool_invocations (job_id, position) WHERE job_id IS NOT NULL;
CREATE INDEX tool_invocations_actor ON tool_invocations (actor_id, position);
CREATE INDEX tool_invocations_invocation ON tool_invocations (invocation_id);

CREATE FUNCTION tool_invocations_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tool_invocations are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER tool_invocations_no_update_delete
    BEFORE UPDATE OR DELETE ON tool_invocations
    FOR EACH ROW EXECUTE FUNCTION tool_invocations_append_only();

CREATE TRIGGER tool_invocations_no_truncate
    BEFORE TRUNCATE ON tool_invocations
    FOR EACH STATEMENT EXECUTE FUNCTION tool_invocations_append_only();
