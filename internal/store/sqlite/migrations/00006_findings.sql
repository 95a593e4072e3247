-- Governance findings of gatehouse audit, kept across runs for trends.

-- +goose Up
CREATE TABLE findings (
    rule        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    evidence    TEXT    NOT NULL,
    fix         TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    resolved_at INTEGER,
    PRIMARY KEY (rule, subject)
) STRICT;

-- +goose Down
DROP TABLE findings;
