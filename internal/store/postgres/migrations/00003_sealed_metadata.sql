-- Free-form credential metadata (owner contact details and the like). It
-- is sealed (AES-256-GCM, see internal/seal) like created_by, revoked_why,
-- last_used_ip and the revocation reason when the store has a data key,
-- so it is plain text, not jsonb: a sealed value is not JSON. '' means none.

-- +goose Up
ALTER TABLE credentials ADD COLUMN metadata text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE credentials DROP COLUMN metadata;
