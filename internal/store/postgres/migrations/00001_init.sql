-- Tables are created unqualified: Open pins search_path to the selected
-- schema on every connection, so they land there.
--
-- Identifiers that results are ordered by use COLLATE "C" (byte order), so
-- listings sort the same as in the sqlite store whatever the database's
-- locale, and their indexes serve those ORDER BYs.

-- +goose Up
CREATE TABLE registry_snapshots (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest     text        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE registry_apis (
    snapshot_id   bigint  NOT NULL REFERENCES registry_snapshots (id) ON DELETE CASCADE,
    name          text    COLLATE "C" NOT NULL,
    version       text    COLLATE "C" NOT NULL,
    owner_team    text    NOT NULL,
    owner_contact text    NOT NULL,
    exposure      text    NOT NULL,
    sensitivity   text    NOT NULL,
    lifecycle     text    NOT NULL,
    reviewed_on   text    NOT NULL,
    reviewed_by   text    NOT NULL,
    host          text    NOT NULL,
    base_path     text    NOT NULL,
    upstream      text    NOT NULL,
    spec_digest   text    NOT NULL,
    operations    integer NOT NULL,
    PRIMARY KEY (snapshot_id, name, version)
);

CREATE TABLE credentials (
    id           text        COLLATE "C" NOT NULL PRIMARY KEY,
    kind         text        NOT NULL,
    consumer     text        NOT NULL,
    partner      text        NOT NULL,
    hash         bytea       NOT NULL,
    -- jsonb (not text) so governance queries can ask "which credentials
    -- carry scope X" with an index later.
    scopes       jsonb       NOT NULL CHECK (jsonb_typeof(scopes) = 'array'),
    created_at   timestamptz NOT NULL,
    created_by   text        NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    revoked_why  text        NOT NULL,
    last_used_at timestamptz,
    last_used_ip text        NOT NULL
);

CREATE INDEX credentials_by_created ON credentials (created_at, id);
CREATE INDEX credentials_by_consumer ON credentials (consumer, created_at, id);
CREATE INDEX credentials_by_partner ON credentials (partner, created_at, id);

-- seq comes from an identity sequence, so it is never reused after a purge;
-- AddRevocation serialises writers so seq order is also commit order.
CREATE TABLE revocations (
    seq        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text        NOT NULL,
    subject    text        NOT NULL,
    reason     text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    created_by text        NOT NULL,
    UNIQUE (kind, subject)
);

CREATE INDEX revocations_by_expiry ON revocations (expires_at) WHERE expires_at IS NOT NULL;

-- +goose Down
DROP TABLE revocations;
DROP TABLE credentials;
DROP TABLE registry_apis;
DROP TABLE registry_snapshots;
