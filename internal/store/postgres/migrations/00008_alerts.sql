-- Anomaly alerts (internal/detect), deduplicated, acknowledged by operators.

-- +goose Up
CREATE TABLE alerts (
    id          text        PRIMARY KEY,
    detector    text        NOT NULL,
    severity    text        NOT NULL,
    subject     text        NOT NULL,
    summary     text        NOT NULL,
    evidence    text        NOT NULL,
    count       bigint      NOT NULL,
    first_at    timestamptz NOT NULL,
    last_at     timestamptz NOT NULL,
    acked_at    timestamptz,
    acked_by    text        NOT NULL,
    response    text        NOT NULL,
    reverted_at timestamptz
);

CREATE INDEX alerts_by_last ON alerts (last_at);

-- +goose Down
DROP TABLE alerts;
