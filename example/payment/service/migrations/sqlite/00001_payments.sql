-- +goose Up
CREATE TABLE IF NOT EXISTS payments (
    order_id       TEXT     PRIMARY KEY,
    customer_id    TEXT     NOT NULL,
    amount_cents   INTEGER  NOT NULL,
    status         TEXT     NOT NULL,
    answer         TEXT     NOT NULL DEFAULT '',
    release_reason TEXT     NOT NULL DEFAULT '',
    created_at     DATETIME NOT NULL,
    updated_at     DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_customer ON payments (customer_id);

-- +goose Down
DROP TABLE IF EXISTS payments;
