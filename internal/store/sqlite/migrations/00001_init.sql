-- Times are INTEGER microseconds since the Unix epoch, UTC: they sort and
-- compare as numbers, match the precision PostgreSQL keeps, and NULL means
-- "no time" (never expires, not revoked, never used).

-- +goose Up
CREATE TABLE registry_snapshots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    digest     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE registry_apis (
    snapshot_id   INTEGER NOT NULL REFERENCES registry_snapshots (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    owner_team    TEXT    NOT NULL,
    owner_contact TEXT    NOT NULL,
    exposure      TEXT    NOT NULL,
    sensitivity   TEXT    NOT NULL,
    lifecycle     TEXT    NOT NULL,
    reviewed_on   TEXT    NOT NULL,
    reviewed_by   TEXT    NOT NULL,
    host          TEXT    NOT NULL,
    base_path     TEXT    NOT NULL,
    upstream      TEXT    NOT NULL,
    spec_digest   TEXT    NOT NULL,
    operations    INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, name, version)
) STRICT;

CREATE TABLE credentials (
    id           TEXT    NOT NULL PRIMARY KEY,
    kind         TEXT    NOT NULL,
    consumer     TEXT    NOT NULL,
    partner      TEXT    NOT NULL,
    hash         BLOB    NOT NULL,
    scopes       TEXT    NOT NULL CHECK (json_valid(scopes) AND json_type(scopes) = 'array'),
    created_at   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    revoked_why  TEXT    NOT NULL,
    last_used_at INTEGER,
    last_used_ip TEXT    NOT NULL
) STRICT;

CREATE INDEX credentials_by_created ON credentials (created_at, id);
CREATE INDEX credentials_by_consumer ON credentials (consumer, created_at, id);
CREATE INDEX credentials_by_partner ON credentials (partner, created_at, id);

-- AUTOINCREMENT (not a plain rowid) so a purged or replaced entry's seq is
-- never handed out again: replicas poll with "seq > last seen".
CREATE TABLE revocations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    created_by TEXT    NOT NULL,
    UNIQUE (kind, subject)
) STRICT;

CREATE INDEX revocations_by_expiry ON revocations (expires_at) WHERE expires_at IS NOT NULL;

-- +goose Down
DROP TABLE revocations;
DROP TABLE credentials;
DROP TABLE registry_apis;
DROP TABLE registry_snapshots;
