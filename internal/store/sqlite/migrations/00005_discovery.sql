-- Traffic discovery aggregates (see store.DiscoveryStore). One row per
-- learned endpoint template; callers in their own table so a merge adds to
-- each caller's row instead of rewriting a list.

-- +goose Up
CREATE TABLE discovery_endpoints (
    host        TEXT    NOT NULL,
    method      TEXT    NOT NULL,
    template    TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    status_2xx  INTEGER NOT NULL,
    status_3xx  INTEGER NOT NULL,
    status_4xx  INTEGER NOT NULL,
    status_5xx  INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    body_schema TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (host, method, template)
) STRICT;

CREATE INDEX discovery_endpoints_by_last_seen ON discovery_endpoints (last_seen);

CREATE TABLE discovery_callers (
    host      TEXT    NOT NULL,
    method    TEXT    NOT NULL,
    template  TEXT    NOT NULL,
    consumer  TEXT    NOT NULL,
    partner   TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (host, method, template, consumer, partner),
    FOREIGN KEY (host, method, template) REFERENCES discovery_endpoints (host, method, template) ON DELETE CASCADE
) STRICT;

-- +goose Down
DROP TABLE discovery_callers;
DROP TABLE discovery_endpoints;
