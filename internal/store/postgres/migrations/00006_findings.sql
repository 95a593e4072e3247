-- Governance findings of gatehouse audit, kept across runs for trends.

-- +goose Up
CREATE TABLE findings (
    rule        TEXT        NOT NULL,
    subject     TEXT        NOT NULL,
    severity    TEXT        NOT NULL,
    title       TEXT        NOT NULL,
    evidence    TEXT        NOT NULL,
    fix         TEXT        NOT NULL,
    first_seen  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ,
    PRIMARY KEY (rule, subject)
);

-- +goose Down
DROP TABLE findings;
