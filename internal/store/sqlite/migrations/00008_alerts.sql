-- Anomaly alerts (internal/detect), deduplicated, acknowledged by operators.

-- +goose Up
CREATE TABLE alerts (
    id          TEXT    PRIMARY KEY,
    detector    TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    summary     TEXT    NOT NULL,
    evidence    TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    acked_at    INTEGER,
    acked_by    TEXT    NOT NULL,
    response    TEXT    NOT NULL,
    reverted_at INTEGER
) STRICT;

CREATE INDEX alerts_by_last ON alerts (last_at);

-- +goose Down
DROP TABLE alerts;
