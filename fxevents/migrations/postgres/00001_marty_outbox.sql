-- +goose Up
-- Times are Unix microseconds (BIGINT) on both drivers, so every replica
-- and both dialects compare them the same way.
CREATE TABLE marty_outbox (
    seq             BIGSERIAL PRIMARY KEY,          -- publish (commit) order
    id              TEXT      NOT NULL,             -- the event's UUIDv7
    aggregate_type  TEXT      NOT NULL DEFAULT '',
    aggregate_id    TEXT      NOT NULL DEFAULT '',
    part            INTEGER   NOT NULL,             -- ordering partition: hash(aggregate_id) % partitions
    type            TEXT      NOT NULL,
    source          TEXT      NOT NULL DEFAULT '',
    payload         BYTEA     NOT NULL,
    metadata        TEXT      NOT NULL DEFAULT '',  -- JSON object: trace context, baggage, correlation id
    occurred_at     BIGINT    NOT NULL,
    created_at      BIGINT    NOT NULL,
    attempts        INTEGER   NOT NULL DEFAULT 0,
    next_attempt_at BIGINT    NOT NULL,
    last_error      TEXT      NOT NULL DEFAULT '',
    done_handlers   TEXT      NOT NULL DEFAULT '',  -- handlers that already succeeded, comma-separated
    only_handler    TEXT      NOT NULL DEFAULT '',  -- a re-driven dead letter runs only its handler
    delivered_at    BIGINT
);
CREATE INDEX marty_outbox_pending ON marty_outbox (part, seq) WHERE delivered_at IS NULL;
CREATE INDEX marty_outbox_delivered ON marty_outbox (delivered_at) WHERE delivered_at IS NOT NULL;

CREATE TABLE marty_outbox_dead (
    id             BIGSERIAL PRIMARY KEY,
    event_id       TEXT    NOT NULL,
    handler        TEXT    NOT NULL DEFAULT '',     -- '' when the transport refused it
    aggregate_type TEXT    NOT NULL DEFAULT '',
    aggregate_id   TEXT    NOT NULL DEFAULT '',
    type           TEXT    NOT NULL,
    source         TEXT    NOT NULL DEFAULT '',
    payload        BYTEA   NOT NULL,
    metadata       TEXT    NOT NULL DEFAULT '',
    occurred_at    BIGINT  NOT NULL,
    attempts       INTEGER NOT NULL,
    last_error     TEXT    NOT NULL,
    dead_at        BIGINT  NOT NULL
);

CREATE TABLE marty_inbox (
    consumer     TEXT   NOT NULL,
    event_id     TEXT   NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX marty_inbox_processed ON marty_inbox (processed_at);

-- +goose Down
DROP TABLE marty_inbox;
DROP TABLE marty_outbox_dead;
DROP TABLE marty_outbox;
