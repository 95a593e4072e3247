-- Security incidents and their timelines (gatehouse incident).

-- +goose Up
CREATE TABLE incidents (
    id        TEXT    PRIMARY KEY,
    scope     TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    opened_at INTEGER NOT NULL,
    opened_by TEXT    NOT NULL,
    closed_at INTEGER
) STRICT;

CREATE TABLE incident_events (
    incident_id TEXT    NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    n           INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    PRIMARY KEY (incident_id, n)
) STRICT;

-- +goose Down
DROP TABLE incident_events;
DROP TABLE incidents;
