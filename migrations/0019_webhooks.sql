-- Webhooks: events out to HTTPS endpoints an admin registers (issue 20).
--
-- Each endpoint is a subscription of its own (`subscription_checkpoints`,
-- name `webhook:<id>`, created at the store's head when the endpoint is
-- registered). Deliveries follow the Standard Webhooks specification; every
-- attempt is logged; an event that fails for 24 hours goes to the dead
-- letters; an endpoint failing for 3 days is disabled.
CREATE TABLE webhook_endpoints (
    id                    uuid        PRIMARY KEY,
    -- Normalised (scheme and host lower-cased, default port dropped).
    url                   text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    -- `<aggregate type>.<EventType>`, `<aggregate type>.*` or `*`.
    event_types           text[]      NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 200),
    include_personal_data boolean     NOT NULL DEFAULT false,
    -- `whsec_` + base64 of 32 random bytes; shown once, in the answer that
    -- registered the endpoint (the sink needs it to sign).
    secret                text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    description           text        CHECK (length(description) <= 500),
    status                text        NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason       text,
    disabled_at           timestamptz,
    -- The first failed attempt since the last successful one (NULL: not failing).
    failing_since         timestamptz,
    -- Bumped by a replay or a re-enable: the sink drops what it remembered.
    generation            bigint      NOT NULL DEFAULT 0,
    created_by            text        NOT NULL,
    created_at            timestamptz NOT NULL,
    deleted_by            text,
    deleted_at            timestamptz,
    CHECK ((status = 'disabled') = (disabled_at IS NOT NULL))
);

-- One live registration per URL (a deleted one frees it).
CREATE UNIQUE INDEX webhook_endpoints_live_url ON webhook_endpoints (url) WHERE deleted_at IS NULL;

-- Every delivery attempt, successful or not.
CREATE TABLE webhook_attempts (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id),
    event_id        uuid        NOT NULL,
    global_position bigint      NOT NULL,
    -- 1 for the first attempt to deliver the event to the endpoint; retries
    -- and a dead letter's replays continue the count.
    attempt         integer     NOT NULL CHECK (attempt >= 1),
    -- The receiver's status; NULL when no answer came (timeout, connection).
    http_status     integer,
    -- NULL when the attempt succeeded (2xx).
    error           text,
    latency_ms      integer     NOT NULL CHECK (latency_ms >= 0),
    at              timestamptz NOT NULL
);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (at);

-- Events being retried: when the first attempt failed (the 24-hour window
-- counts from it) and how many attempts were made. Deleted when the event is
-- delivered or dead-lettered.
CREATE TABLE webhook_retries (
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id),
    event_id        uuid        NOT NULL,
    global_position bigint      NOT NULL,
    attempts        integer     NOT NULL CHECK (attempts >= 1),
    first_failed_at timestamptz NOT NULL,
    last_error      text        NOT NULL,
    last_attempt_at timestamptz NOT NULL,
    PRIMARY KEY (endpoint_id, event_id)
);

-- Events given up on after 24 hours of failed attempts; an admin can replay
-- them (each replay is one more attempt, its outcome recorded here:
-- `replayed_at` when delivered, else the new `last_error`).
CREATE TABLE webhook_dead_letters (
    endpoint_id         uuid        NOT NULL REFERENCES webhook_endpoints (id),
    event_id            uuid        NOT NULL,
    global_position     bigint      NOT NULL,
    attempts            integer     NOT NULL CHECK (attempts >= 1),
    last_error          text        NOT NULL,
    first_failed_at     timestamptz NOT NULL,
    dead_at             timestamptz NOT NULL,
    replay_requested_at timestamptz,
    replayed_at         timestamptz,
    PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX webhook_dead_letters_requested ON webhook_dead_letters (endpoint_id)
    WHERE replay_requested_at IS NOT NULL;
