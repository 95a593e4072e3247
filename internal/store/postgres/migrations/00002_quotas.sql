-- Quota counters of a single node: one row per key and calendar window
-- (window_start in Unix seconds). Old windows are never read again.

-- +goose Up
CREATE TABLE quotas (
    key          TEXT   NOT NULL,
    window_start BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);

-- +goose Down
DROP TABLE quotas;
