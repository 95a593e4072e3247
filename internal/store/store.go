// Package store defines the persistence seam of Gatehouse. Two implementations
// live beside it: sqlite (embedded, the default) and postgres (cluster). Both
// must pass the shared conformance suite in storetest.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a looked-up record does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned when a record with the same identity already exists.
var ErrConflict = errors.New("store: conflict")

// Store is everything Gatehouse keeps across restarts. Implementations are
// safe for concurrent use. Every method honours ctx cancellation and deadline.
//
// Times are returned in UTC, truncated to microseconds (see NormalizeTime);
// a zero time.Time is stored as NULL and returned as zero. Listings sort
// text in byte order (as sort.Strings), whatever the database's collation.
type Store interface {
	// Ping checks the store is reachable (used by /readyz).
	Ping(ctx context.Context) error
	// Close releases connections. The store must not be used afterwards.
	Close() error

	RegistryStore
	CredentialStore
	RevocationStore
	AuditStore
}

// RegistryStore keeps the API inventory as it was last loaded from config.
// A snapshot is written on every successful config load whose content
// differs from the latest one, so the history of the registry is auditable.
type RegistryStore interface {
	// SaveSnapshot stores snap if its Digest differs from the latest
	// snapshot's. It returns the stored (or existing latest) snapshot ID and
	// whether a new row was written. An empty Digest is an error; two APIs
	// with the same Name and Version give ErrConflict. A zero CreatedAt is
	// set to the current time.
	SaveSnapshot(ctx context.Context, snap RegistrySnapshot) (id int64, created bool, err error)
	// LatestSnapshot returns the newest snapshot (the last stored, whatever
	// its CreatedAt) with its APIs ordered by name, version, or ErrNotFound.
	LatestSnapshot(ctx context.Context) (RegistrySnapshot, error)
	// ListAPIs returns the APIs of the latest snapshot, ordered by name,
	// version; none (and no error) before the first snapshot.
	ListAPIs(ctx context.Context) ([]APIRecord, error)
}

// RegistrySnapshot is the registry as compiled from one config load.
type RegistrySnapshot struct {
	ID        int64
	Digest    string // hex SHA-256 of the canonical registry content
	CreatedAt time.Time
	APIs      []APIRecord
}

// APIRecord is the inventory entry for one API version.
type APIRecord struct {
	Name         string
	Version      string
	OwnerTeam    string
	OwnerContact string
	Exposure     string // internal | partner | public
	Sensitivity  string // public | internal | confidential | restricted
	Lifecycle    string // design | active | deprecated | retired
	ReviewedOn   string // YYYY-MM-DD, empty when never reviewed
	ReviewedBy   string
	Host         string
	BasePath     string
	Upstream     string
	SpecDigest   string // hex SHA-256 of the OpenAPI document
	Operations   int
}

// CredentialStore keeps issued credentials. Secrets are never stored: only a
// keyed hash of them (see the authn package).
type CredentialStore interface {
	// CreateCredential stores c. c.ID must be non-empty and unique
	// (ErrConflict otherwise). A zero CreatedAt is set to the current time.
	CreateCredential(ctx context.Context, c Credential) error
	// GetCredential returns the credential with id or ErrNotFound.
	GetCredential(ctx context.Context, id string) (Credential, error)
	// ListCredentials returns credentials matching f, ordered by CreatedAt then ID.
	ListCredentials(ctx context.Context, f CredentialFilter) ([]Credential, error)
	// RevokeCredential marks the credential revoked at the given time. Revoking
	// an already revoked credential keeps the first revocation time and
	// returns nil; an unknown id returns ErrNotFound. A zero at means now.
	RevokeCredential(ctx context.Context, id string, at time.Time, reason string) error
	// TouchCredential records last use. It is called asynchronously, off the
	// request path; a later LastUsedAt never gets overwritten by an earlier one
	// (nor by an equal one). An unknown id returns ErrNotFound.
	TouchCredential(ctx context.Context, id string, at time.Time, sourceIP string) error
}

// Credential is one issued secret's metadata (never the secret).
type Credential struct {
	ID         string // public identifier part of the credential
	Kind       string // apikey | client_secret | ...
	Consumer   string
	Partner    string // empty when the consumer has no partner
	Hash       []byte // keyed hash of the secret
	Scopes     []string
	CreatedAt  time.Time
	CreatedBy  string
	ExpiresAt  time.Time // zero: never (policy normally forbids it)
	RevokedAt  time.Time // zero: not revoked
	RevokedWhy string
	LastUsedAt time.Time
	LastUsedIP string
}

// CredentialFilter narrows ListCredentials. Empty fields match everything.
type CredentialFilter struct {
	Consumer       string
	Partner        string
	IncludeRevoked bool
}

// RevocationStore keeps revoked identifiers (credential IDs, token jti, whole
// consumers or partners) until they can no longer matter.
type RevocationStore interface {
	// AddRevocation records r. Adding the same (Kind, Subject) twice keeps one
	// entry, with the later ExpiresAt (zero, never, being the latest): when r
	// expires later it replaces the entry under a new Seq, so replicas polling
	// RevocationsSince see the extension; otherwise nothing changes. Kind and
	// Subject must be non-empty. A zero CreatedAt is set to the current time.
	AddRevocation(ctx context.Context, r Revocation) error
	// IsRevoked reports whether (kind, subject) is revoked and not yet expired at now.
	// An entry is in force up to and including its ExpiresAt (fail closed).
	IsRevoked(ctx context.Context, kind, subject string, now time.Time) (bool, error)
	// RevocationsSince returns revocations with Seq > seq, ordered by Seq, so
	// a replica can poll for changes it has not seen. A Seq is never handed
	// out twice, even after its entry is purged.
	RevocationsSince(ctx context.Context, seq int64) ([]Revocation, error)
	// PurgeExpiredRevocations deletes entries whose ExpiresAt is before now and
	// returns how many were deleted.
	PurgeExpiredRevocations(ctx context.Context, now time.Time) (int64, error)
}

// Revocation kinds.
const (
	RevokeCredential = "credential"
	RevokeToken      = "jti"
	RevokeConsumer   = "consumer"
	RevokePartner    = "partner"
)

// Revocation is one entry of the revocation list.
type Revocation struct {
	Seq       int64 // assigned by the store, increasing
	Kind      string
	Subject   string
	Reason    string
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never expires
	CreatedBy string
}
