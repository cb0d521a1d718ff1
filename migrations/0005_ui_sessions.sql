-- Browser sessions of the pages under /ui. Logging in with an API key makes a
-- random session token; the browser keeps it in an HTTP-only, Secure,
-- SameSite=Strict cookie and the database keeps only its SHA-256. The key
-- itself is never stored here or in the cookie. Every request joins
-- api_keys, so revoking the key ends its sessions at once; logging out sets
-- revoked_at.
CREATE TABLE ui_sessions (
    token_hash text        PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    key_name   text        NOT NULL REFERENCES api_keys (name),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CHECK (expires_at > created_at)
);

CREATE INDEX ui_sessions_key ON ui_sessions (key_name);
