package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/redact"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/postgres"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

// sealCheckLimit bounds how many sealed values startup tries to open: a
// wrong or missing key shows on the first one; the rest is rotate-data-key's
// job, not every restart's.
const sealCheckLimit = 10000

// OpenedStore is a store opened with its data key ring.
type OpenedStore struct {
	Store store.Store
	// Keys is the data key ring, nil when store.encryption is not set.
	Keys *seal.KeyRing
	// Plaintext counts sensitive values (among those checked) written
	// before encryption was turned on; rotate-data-key seals them.
	Plaintext int64
}

// OpenSealedStore opens the store a config names with the data key ring
// of store.encryption, and checks that the sealed values already stored
// open with it. A key that cannot be read, is too short, is not the one the
// data was sealed with, or is missing while the store holds sealed values
// is an error naming what to fix: the gateway never starts handing
// ciphertext on as data, nor writing plaintext where it wrote sealed values.
func OpenSealedStore(ctx context.Context, c config.Store) (OpenedStore, error) {
	keys, err := seal.Load(c.Encryption.KeyFile, c.Encryption.KeyEnv, os.LookupEnv)
	if err != nil {
		return OpenedStore{}, fmt.Errorf("store.encryption: %w", err)
	}
	var st store.Store
	if c.Postgres != "" {
		st, err = postgres.Open(ctx, c.Postgres, postgres.WithKeyRing(keys))
		if err != nil {
			return OpenedStore{}, fmt.Errorf("open PostgreSQL store: %w", err)
		}
	} else {
		st, err = sqlite.Open(ctx, c.SQLite, sqlite.WithKeyRing(keys))
		if err != nil {
			return OpenedStore{}, fmt.Errorf("open SQLite store %s: %w", c.SQLite, err)
		}
	}
	out := OpenedStore{Store: st, Keys: keys}
	if ss, ok := st.(store.SealedStore); ok {
		out.Plaintext, err = store.CheckSealed(ctx, ss, keys, sealCheckLimit)
		if err != nil {
			st.Close()
			return OpenedStore{}, fmt.Errorf("store.encryption: the store's encrypted values do not open with the configured data key ring (%w); configure the key they were sealed with, keeping old keys after the active one until gatehouse keys rotate-data-key has run", err)
		}
	}
	return out, nil
}

// newRedactor builds the redaction engine for cfg. The mark key comes from
// redaction.key_file, else derives from the data key (stable across
// restarts and replicas), else is random per process.
func newRedactor(cfg *config.Config, keys *seal.KeyRing) (*redact.Redactor, error) {
	o := redact.Options{Fields: cfg.Redaction.Fields, Headers: cfg.Redaction.Headers, Detectors: cfg.Redaction.Detectors}
	switch {
	case cfg.Redaction.KeyFile != "":
		b, err := os.ReadFile(cfg.Redaction.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redaction.key_file: %w", err)
		}
		if len(b) < 32 {
			return nil, fmt.Errorf("redaction.key_file %s: key is %d bytes, want at least 32 random bytes", cfg.Redaction.KeyFile, len(b))
		}
		o.Key = b
	case keys != nil:
		o.Key = keys.Derive("redaction marks")
	}
	r, err := redact.New(o)
	if err != nil {
		return nil, fmt.Errorf("redaction: %w", err)
	}
	return r, nil
}

// redactingLogger wraps l so that every record passes through redaction.
func redactingLogger(l *slog.Logger) (*slog.Logger, *redact.Handler) {
	h := redact.NewHandler(l.Handler(), nil)
	return slog.New(h), h
}
