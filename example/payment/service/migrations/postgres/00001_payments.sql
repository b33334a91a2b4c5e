-- +goose Up
CREATE TABLE IF NOT EXISTS payments (
    order_id       VARCHAR(64)  PRIMARY KEY,
    customer_id    VARCHAR(64)  NOT NULL,
    amount_cents   BIGINT       NOT NULL,
    status         VARCHAR(16)  NOT NULL,
    answer         VARCHAR(200) NOT NULL DEFAULT '',
    release_reason VARCHAR(200) NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ  NOT NULL,
    updated_at     TIMESTAMPTZ  NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_customer ON payments (customer_id);

-- +goose Down
DROP TABLE IF EXISTS payments;
