-- The technician's field app (issue 19).
--
-- One-time sign-in links: a dispatcher makes a link for a technician, the
-- phone opens it and gets a page session for the technician's key. The token
-- (32 random bytes, hex) is in the link only; the database keeps its SHA-256.
-- A link is redeemed at most once (used_at is set by the one UPDATE that
-- redeems it) and only before expires_at; it names the key the session will
-- be bound to, so revoking that key ends the link and every session made
-- from it.
CREATE TABLE signin_links (
    token_hash    text        PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    technician_id text        NOT NULL,
    key_name      text        NOT NULL REFERENCES api_keys (name),
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    CHECK (expires_at > created_at)
);

CREATE INDEX signin_links_technician ON signin_links (technician_id, created_at DESC);

-- The phone's last contact per job and technician, and what it said it still
-- holds for that job (actions queued offline, not yet accepted by the
-- server). Written on each contact; the board and the job page show it to
-- dispatchers. Not an event: it is what a phone last said, not something the
-- job did.
CREATE TABLE field_contacts (
    job_id            text        NOT NULL,
    technician_id     text        NOT NULL,
    last_contact_at   timestamptz NOT NULL,
    pending           integer     NOT NULL DEFAULT 0 CHECK (pending >= 0),
    oldest_pending_at timestamptz,
    PRIMARY KEY (job_id, technician_id),
    CHECK (pending > 0 OR oldest_pending_at IS NULL)
);
