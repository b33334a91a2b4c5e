-- +goose Up
CREATE TABLE IF NOT EXISTS orders (
    id            TEXT    PRIMARY KEY,
    customer_id   TEXT    NOT NULL,
    items         TEXT    NOT NULL,
    total_cents   INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    cancel_reason TEXT    NOT NULL DEFAULT '',
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    DATETIME NOT NULL,
    updated_at    DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_customer_created ON orders (customer_id, created_at);
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at);

-- +goose Down
DROP TABLE IF EXISTS orders;
