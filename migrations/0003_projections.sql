-- Projection bookkeeping. Each read model has a registry row naming the
-- table that serves queries (active) and, during a rebuild, the shadow table
-- being built from position zero. Every read-model table has its own
-- checkpoint, moved in the same transaction as the rows it applied.
CREATE TABLE projection_registry (
    name             text        PRIMARY KEY,
    active_table     text        NOT NULL,
    active_version   integer     NOT NULL,
    building_table   text,
    building_version integer,
    generation       integer     NOT NULL DEFAULT 1,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projection_checkpoints (
    table_name     text        PRIMARY KEY,
    last_tx        xid8        NOT NULL DEFAULT '0'::xid8,
    last_pos       bigint      NOT NULL DEFAULT 0,
    events_applied bigint      NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Tables replaced by a rebuild, dropped after a grace period so that a query
-- that resolved the old name just before the swap still finds it.
CREATE TABLE projection_retired (
    table_name text        PRIMARY KEY,
    retired_at timestamptz NOT NULL DEFAULT now()
);
