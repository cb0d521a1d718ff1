-- Idempotency: one row per (caller, key), written in the same transaction as
-- the command's events, holding the exact answer to replay.
CREATE TABLE idempotency_records (
    caller          text        NOT NULL,
    idempotency_key text        NOT NULL,
    request_hash    text        NOT NULL,
    status_code     integer     NOT NULL,
    response_body   bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, idempotency_key)
);

-- API keys: only a SHA-256 of the key is stored.
CREATE TABLE api_keys (
    name          text        PRIMARY KEY,
    key_hash      text        NOT NULL UNIQUE,
    role          text        NOT NULL CHECK (role IN ('agent', 'dispatcher', 'technician', 'auditor', 'admin', 'system')),
    technician_id text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    CHECK ((role = 'technician') = (technician_id IS NOT NULL))
);

-- Evidence files: content-addressed in the object store, described here.
CREATE TABLE evidence_objects (
    sha256       text        PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes   bigint      NOT NULL CHECK (size_bytes >= 0),
    content_type text        NOT NULL,
    uploaded_by  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Site-and-door index for duplicate and recall detection at open_job: the
-- command path keeps it in the same transaction as the job's events.
CREATE TABLE job_doors (
    job_id        text        PRIMARY KEY,
    site_id       text        NOT NULL,
    door_id       text        NOT NULL,
    state         text        NOT NULL,
    technician_id text,
    completed_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_doors_site_door ON job_doors (site_id, door_id);
