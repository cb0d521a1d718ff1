-- Subscriptions: events out (issue 20).
--
-- A subscription follows the event store in the projectors' order,
-- (tx_id, global_position) below the oldest running transaction, and hands
-- each batch to a sink (NATS JetStream, a webhook endpoint). Its checkpoint
-- is the last event the sink acknowledged: it moves only after the
-- acknowledgement (at least once), by a compare-and-set on the previous
-- position (a replay that reset it meanwhile wins) and only while the
-- writer is the recorded leader (a replica that lost the lead cannot move
-- it).
CREATE TABLE subscription_checkpoints (
    name             text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9:_-]{0,99}$'),
    kind             text        NOT NULL CHECK (kind IN ('nats', 'webhook')),
    last_tx          xid8        NOT NULL DEFAULT '0'::xid8,
    last_pos         bigint      NOT NULL DEFAULT 0,
    events_delivered bigint      NOT NULL DEFAULT 0,
    delivered_by     text,
    delivered_at     timestamptz,
    last_error       text,
    last_error_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The replica delivering every subscription. A replica leads while it holds
-- a session advisory lock on a connection of its own (released by
-- PostgreSQL when that connection or the process dies); on taking the lead
-- it writes its name here, and every checkpoint move checks it (fencing: a
-- replica whose lock connection was lost while it went on delivering can no
-- longer move a checkpoint, and stops).
CREATE TABLE subscription_leader (
    only_row boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    leader   text        NOT NULL,
    since    timestamptz NOT NULL DEFAULT now()
);
