-- +goose Up
CREATE TABLE IF NOT EXISTS orders (
    id            VARCHAR(36)  PRIMARY KEY,
    customer_id   VARCHAR(64)  NOT NULL,
    items         JSONB        NOT NULL,
    total_cents   BIGINT       NOT NULL,
    status        VARCHAR(16)  NOT NULL,
    cancel_reason VARCHAR(200) NOT NULL DEFAULT '',
    version       BIGINT       NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ  NOT NULL,
    updated_at    TIMESTAMPTZ  NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_customer_created ON orders (customer_id, created_at);
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at);

-- +goose Down
DROP TABLE IF EXISTS orders;
