-- Quota counters of a single node: one row per key and calendar window
-- (window_start in Unix seconds). Old windows are never read again.

-- +goose Up
CREATE TABLE quotas (
    key          TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    used         INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE quotas;
