-- Security incidents and their timelines (gatehouse incident).

-- +goose Up
CREATE TABLE incidents (
    id        text        PRIMARY KEY,
    scope     text        NOT NULL,
    subject   text        NOT NULL,
    reason    text        NOT NULL,
    opened_at timestamptz NOT NULL,
    opened_by text        NOT NULL,
    closed_at timestamptz
);

CREATE TABLE incident_events (
    incident_id text        NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    n           integer     NOT NULL,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    detail      text        NOT NULL,
    PRIMARY KEY (incident_id, n)
);

-- +goose Down
DROP TABLE incident_events;
DROP TABLE incidents;
