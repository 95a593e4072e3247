-- Traffic discovery aggregates (see store.DiscoveryStore). One row per
-- learned endpoint template; callers in their own table so a merge adds to
-- each caller's row instead of rewriting a list.

-- +goose Up
CREATE TABLE discovery_endpoints (
    host        text        COLLATE "C" NOT NULL,
    method      text        COLLATE "C" NOT NULL,
    template    text        COLLATE "C" NOT NULL,
    count       bigint      NOT NULL,
    status_2xx  bigint      NOT NULL,
    status_3xx  bigint      NOT NULL,
    status_4xx  bigint      NOT NULL,
    status_5xx  bigint      NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    body_schema text        NOT NULL DEFAULT '',
    PRIMARY KEY (host, method, template)
);

CREATE INDEX discovery_endpoints_by_last_seen ON discovery_endpoints (last_seen);

CREATE TABLE discovery_callers (
    host      text        COLLATE "C" NOT NULL,
    method    text        COLLATE "C" NOT NULL,
    template  text        COLLATE "C" NOT NULL,
    consumer  text        COLLATE "C" NOT NULL,
    partner   text        COLLATE "C" NOT NULL,
    count     bigint      NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (host, method, template, consumer, partner),
    FOREIGN KEY (host, method, template) REFERENCES discovery_endpoints (host, method, template) ON DELETE CASCADE
);

-- +goose Down
DROP TABLE discovery_callers;
DROP TABLE discovery_endpoints;
