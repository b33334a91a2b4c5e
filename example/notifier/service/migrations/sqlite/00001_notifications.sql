-- +goose Up
CREATE TABLE IF NOT EXISTS notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT     NOT NULL,
    event_type  TEXT     NOT NULL,
    order_id    TEXT     NOT NULL,
    customer_id TEXT     NOT NULL,
    message     TEXT     NOT NULL,
    created_at  DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_order ON notifications (order_id);

-- +goose Down
DROP TABLE IF EXISTS notifications;
