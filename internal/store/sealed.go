package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// Sensitive columns. Their values are sealed (see package seal) when the
// store is opened with a data key ring, each bound to its table, column
// and row so a sealed value moved elsewhere does not decrypt. Hashes of
// secrets (Credential.Hash) are not here: they are never decryptable.
var (
	CredentialSealedColumns = []string{"created_by", "revoked_why", "last_used_ip", "metadata"}
	RevocationSealedColumns = []string{"reason", "created_by"}
)

// CredentialAAD binds a sealed credential column to its row.
func CredentialAAD(column, id string) string { return seal.AAD("credentials", column, id) }

// RevocationAAD binds a sealed revocation column to its (kind, subject).
func RevocationAAD(column, kind, subject string) string {
	return seal.AAD("revocations", column, kind+"\x00"+subject)
}

// SealedCredential holds the stored form of a credential's sensitive fields.
type SealedCredential struct {
	CreatedBy, RevokedWhy, LastUsedIP, Metadata string
}

// SealCredential encrypts c's sensitive fields under k (nil: as is).
func SealCredential(k *seal.KeyRing, c Credential) (SealedCredential, error) {
	meta, err := encodeMetadata(c.Metadata)
	if err != nil {
		return SealedCredential{}, err
	}
	var out SealedCredential
	for _, f := range []struct {
		col  string
		in   string
		dest *string
	}{
		{"created_by", c.CreatedBy, &out.CreatedBy},
		{"revoked_why", c.RevokedWhy, &out.RevokedWhy},
		{"last_used_ip", c.LastUsedIP, &out.LastUsedIP},
		{"metadata", meta, &out.Metadata},
	} {
		if *f.dest, err = k.SealString(f.in, CredentialAAD(f.col, c.ID)); err != nil {
			return SealedCredential{}, fmt.Errorf("seal %s: %w", f.col, err)
		}
	}
	return out, nil
}

// OpenCredential decrypts the stored fields into c (c.ID must be set).
func OpenCredential(k *seal.KeyRing, c *Credential, stored SealedCredential) error {
	var meta string
	for _, f := range []struct {
		col  string
		in   string
		dest *string
	}{
		{"created_by", stored.CreatedBy, &c.CreatedBy},
		{"revoked_why", stored.RevokedWhy, &c.RevokedWhy},
		{"last_used_ip", stored.LastUsedIP, &c.LastUsedIP},
		{"metadata", stored.Metadata, &meta},
	} {
		v, err := k.OpenString(f.in, CredentialAAD(f.col, c.ID))
		if err != nil {
			return fmt.Errorf("credential %q %s: %w", c.ID, f.col, err)
		}
		*f.dest = v
	}
	var err error
	c.Metadata, err = decodeMetadata(meta)
	if err != nil {
		return fmt.Errorf("credential %q: %w", c.ID, err)
	}
	return nil
}

// SealRevocation returns the stored reason and created_by of r.
func SealRevocation(k *seal.KeyRing, r Revocation) (reason, createdBy string, err error) {
	if reason, err = k.SealString(r.Reason, RevocationAAD("reason", r.Kind, r.Subject)); err != nil {
		return "", "", fmt.Errorf("seal reason: %w", err)
	}
	if createdBy, err = k.SealString(r.CreatedBy, RevocationAAD("created_by", r.Kind, r.Subject)); err != nil {
		return "", "", fmt.Errorf("seal created_by: %w", err)
	}
	return reason, createdBy, nil
}

// OpenRevocation decrypts r.Reason and r.CreatedBy in place.
func OpenRevocation(k *seal.KeyRing, r *Revocation) error {
	var err error
	if r.Reason, err = k.OpenString(r.Reason, RevocationAAD("reason", r.Kind, r.Subject)); err != nil {
		return fmt.Errorf("revocation %s %q reason: %w", r.Kind, r.Subject, err)
	}
	if r.CreatedBy, err = k.OpenString(r.CreatedBy, RevocationAAD("created_by", r.Kind, r.Subject)); err != nil {
		return fmt.Errorf("revocation %s %q created_by: %w", r.Kind, r.Subject, err)
	}
	return nil
}

// encodeMetadata stores metadata as a JSON object, "" when empty.
func encodeMetadata(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode metadata: %w", err)
	}
	return string(b), nil
}

func decodeMetadata(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode metadata: %w", err)
	}
	return m, nil
}

// ResealFunc maps a stored sensitive value (never empty) and its additional
// data to the value to store instead; returning it unchanged writes
// nothing. Returning ErrStopReseal ends the walk without error.
type ResealFunc func(stored, aad string) (string, error)

// ErrStopReseal stops ResealValues early.
var ErrStopReseal = errors.New("store: stop reseal")

// ResealStats counts what ResealValues did.
type ResealStats struct {
	Visited int64 // non-empty sensitive values seen
	Changed int64 // values rewritten
	Raced   int64 // values changed concurrently (by a running gateway) and left as they were
}

// SealedStore is implemented by stores that keep sealed columns.
type SealedStore interface {
	// ResealValues walks every non-empty sensitive value, batch rows per
	// read, and writes back what fn changes. Each write is a
	// compare-and-swap on the old value, so a running gateway that updated
	// the same value meanwhile wins (its write is already sealed under its
	// own ring) instead of being overwritten. Safe to run concurrently
	// with serving; running it twice changes nothing the second time.
	ResealValues(ctx context.Context, batch int, fn ResealFunc) (ResealStats, error)
}

// CheckSealed verifies, at startup, that the store's sealed values open
// with k (at most limit values are tried): a missing key (k nil while
// values are sealed), an unknown key ID or a wrong key is an error, never
// ciphertext handed on as data. It returns how many plaintext values it saw
// while k is set (written before encryption was turned on).
func CheckSealed(ctx context.Context, s SealedStore, k *seal.KeyRing, limit int64) (plaintext int64, err error) {
	var seen int64
	_, err = s.ResealValues(ctx, 500, func(stored, aad string) (string, error) {
		if seen++; seen > limit {
			return stored, ErrStopReseal
		}
		if !seal.IsSealed(stored) {
			if k != nil {
				plaintext++
			}
			return stored, nil
		}
		_, err := k.OpenString(stored, aad)
		return stored, err
	})
	if err != nil {
		return plaintext, fmt.Errorf("check sealed values: %w", err)
	}
	return plaintext, nil
}
