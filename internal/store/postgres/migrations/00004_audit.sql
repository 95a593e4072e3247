-- The audit index: filled from the signed audit log, which stays the source
-- of truth. Times are TIMESTAMPTZ.

-- +goose Up
CREATE TABLE audit_records (
    log_id        TEXT    NOT NULL,
    seq           BIGINT  NOT NULL,
    time          TIMESTAMPTZ NOT NULL,
    type          TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    consumer      TEXT    NOT NULL,
    partner       TEXT    NOT NULL,
    credential_id TEXT    NOT NULL,
    api           TEXT    NOT NULL,
    version       TEXT    NOT NULL DEFAULT '',
    operation     TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    client_ip     TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    decision      TEXT    NOT NULL,
    stage         TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    latency_us    BIGINT NOT NULL,
    record        TEXT    NOT NULL,
    PRIMARY KEY (log_id, seq)
);
CREATE INDEX audit_records_time ON audit_records (time);
CREATE INDEX audit_records_consumer ON audit_records (consumer, time);
CREATE INDEX audit_records_partner ON audit_records (partner, time);
CREATE INDEX audit_records_api ON audit_records (api, time);

CREATE TABLE audit_index_position (
    log_id  TEXT    PRIMARY KEY,
    segment INTEGER NOT NULL,
    byte_offset BIGINT NOT NULL,
    seq     BIGINT NOT NULL
);

-- +goose Down
DROP TABLE audit_index_position;
DROP TABLE audit_records;
