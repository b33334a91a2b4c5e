-- +goose Up
-- Times are Unix microseconds (BIGINT), as in fxevents' tables.
CREATE TABLE marty_saga (
    saga_type     TEXT    NOT NULL,               -- the saga's name
    saga_key      TEXT    NOT NULL,               -- its correlation key (an order id)
    status        TEXT    NOT NULL,               -- running, completed, compensating, compensated, aborted
    stuck         INTEGER NOT NULL DEFAULT 0,     -- 1: a timer or compensation ran out of attempts
    state         BYTEA   NOT NULL,               -- JSON of the state struct
    state_version INTEGER NOT NULL,               -- the state's schema version
    version       BIGINT  NOT NULL DEFAULT 0,     -- steps applied
    compensations TEXT    NOT NULL DEFAULT '',    -- JSON array of registered compensations, oldest first
    last_error    TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    PRIMARY KEY (saga_type, saga_key)
);
CREATE INDEX marty_saga_status ON marty_saga (status, updated_at);

-- Durable timers: deadlines a step scheduled, and the work of running
-- compensations ("$compensate"). Every writer holds the saga's row lock.
CREATE TABLE marty_saga_timer (
    id         BIGSERIAL PRIMARY KEY,
    saga_type  TEXT    NOT NULL,
    saga_key   TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    due_at     BIGINT  NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT    NOT NULL DEFAULT '',
    parked     INTEGER NOT NULL DEFAULT 0,        -- 1: out of attempts, waits for a retry
    metadata   TEXT    NOT NULL DEFAULT '',       -- trace context of the step that scheduled it
    UNIQUE (saga_type, saga_key, name)
);
CREATE INDEX marty_saga_timer_due ON marty_saga_timer (due_at) WHERE parked = 0;

-- Step history: one row per step that ran (or failed, or was retried).
CREATE TABLE marty_saga_step (
    id          BIGSERIAL PRIMARY KEY,
    saga_type   TEXT    NOT NULL,
    saga_key    TEXT    NOT NULL,
    step        TEXT    NOT NULL,
    event_id    TEXT    NOT NULL DEFAULT '',
    event_type  TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL,                 -- the saga's status after the step
    error       TEXT    NOT NULL DEFAULT '',
    at          BIGINT  NOT NULL,
    duration_us BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX marty_saga_step_saga ON marty_saga_step (saga_type, saga_key, id);

-- +goose Down
DROP TABLE marty_saga_step;
DROP TABLE marty_saga_timer;
DROP TABLE marty_saga;
