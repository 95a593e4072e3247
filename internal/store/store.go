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
	DiscoveryStore
	FindingStore
	IncidentStore
	AlertStore
	QuotaStore
	AuditStore
	AuditStats
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
	// Metadata is free-form and may be personal (owner contact details):
	// like CreatedBy, RevokedWhy and LastUsedIP it is sealed at rest when
	// a data key is configured (see sealed.go).
	Metadata map[string]string
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
	// LiftRevocation ends the entry (kind, subject) at at (normally now):
	// its ExpiresAt becomes at, Reason and CreatedBy record who lifted it
	// and why, and it gets a new Seq so polling replicas see the change.
	// This is the one way an entry is shortened: an explicit re-enable
	// after an incident. ErrNotFound when there is no such entry.
	LiftRevocation(ctx context.Context, kind, subject string, at time.Time, by, reason string) error
}

// Revocation kinds.
const (
	RevokeCredential = "credential"
	RevokeToken      = "jti"
	RevokeConsumer   = "consumer"
	RevokePartner    = "partner"
	// RevokeNetwork blocks client addresses: the subject is a CIDR.
	RevokeNetwork = "network"
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

// FindingStore keeps governance findings (gatehouse audit) across runs, so
// trends are visible: when a problem first appeared, when it was last seen
// and when it was resolved.
type FindingStore interface {
	// SyncFindings records one audit run at now. Findings in fs are opened
	// (FirstSeen = LastSeen = now) or refreshed (LastSeen, Severity, Title,
	// Evidence and Fix updated; a resolved one reopens with ResolvedAt
	// cleared and its FirstSeen kept). Open findings absent from fs are
	// resolved at now. (Rule, Subject) identifies a finding; duplicates in
	// fs count once.
	SyncFindings(ctx context.Context, now time.Time, fs []Finding) (opened, resolved int, err error)
	// ListFindings returns findings ordered by Rule then Subject; resolved
	// ones only when includeResolved.
	ListFindings(ctx context.Context, includeResolved bool) ([]Finding, error)
}

// Finding is one governance problem about one subject.
type Finding struct {
	Rule       string // stable rule ID, e.g. GH-CRED-UNUSED
	Subject    string // what it is about, e.g. credential:3fQk9ZtB1xW7pLmA
	Severity   string // low | medium | high | critical
	Title      string
	Evidence   string
	Fix        string
	FirstSeen  time.Time
	LastSeen   time.Time
	ResolvedAt time.Time // zero: open
}

// IncidentStore keeps security incidents and their timelines.
type IncidentStore interface {
	// CreateIncident stores inc (ID must be new: ErrConflict otherwise)
	// with its initial events.
	CreateIncident(ctx context.Context, inc Incident) error
	// AddIncidentEvent appends to an incident's timeline (ErrNotFound if
	// there is no such incident).
	AddIncidentEvent(ctx context.Context, id string, ev IncidentEvent) error
	// CloseIncident marks it closed at at by by, adding a "closed" event
	// with note. Closing a closed incident is ErrConflict.
	CloseIncident(ctx context.Context, id string, at time.Time, by, note string) error
	// GetIncident returns one incident with its timeline in order.
	GetIncident(ctx context.Context, id string) (Incident, error)
	// ListIncidents returns incidents newest first, without timelines;
	// only open ones unless all.
	ListIncidents(ctx context.Context, all bool) ([]Incident, error)
}

// Incident is a security incident against one scope.
type Incident struct {
	ID       string
	Scope    string // partner | consumer | credential
	Subject  string
	Reason   string
	OpenedAt time.Time
	OpenedBy string
	ClosedAt time.Time // zero: open
	Events   []IncidentEvent
}

// IncidentEvent is one line of an incident's timeline.
type IncidentEvent struct {
	At     time.Time
	Actor  string
	Action string // opened, revoked, blocked, notified, note, lifted, closed, ...
	Detail string
}

// AlertStore keeps anomaly alerts so they can be listed and acknowledged.
type AlertStore interface {
	// SaveAlert inserts a or replaces the alert with its ID.
	SaveAlert(ctx context.Context, a Alert) error
	// GetAlert returns one alert (ErrNotFound if none).
	GetAlert(ctx context.Context, id string) (Alert, error)
	// ListAlerts returns alerts, most recent LastAt first, at most limit
	// (0: 1000); acknowledged ones only when all.
	ListAlerts(ctx context.Context, all bool, limit int) ([]Alert, error)
	// AckAlert acknowledges an alert (ErrNotFound if none; acknowledging
	// twice keeps the first acknowledgement).
	AckAlert(ctx context.Context, id, by string, at time.Time) error
}

// Alert is a deduplicated anomaly: one detector about one subject.
type Alert struct {
	ID         string
	Detector   string
	Severity   string
	Subject    string
	Summary    string
	Evidence   string // JSON object
	Count      int64  // findings folded into this alert
	FirstAt    time.Time
	LastAt     time.Time
	AckedAt    time.Time // zero: not acknowledged
	AckedBy    string
	Response   string    // the automatic response taken, if any
	RevertedAt time.Time // when that response was undone
}

// QuotaStore keeps quota counters on a single node (a cluster keeps them in
// Redis). A counter is one key's usage in one calendar window, identified
// by the window's start; a new window is a new, empty counter.
type QuotaStore interface {
	// TakeQuota adds each take's N to its counter if every counter stays
	// within its Limit, atomically: all or nothing, so a request refused by
	// one quota consumes no other. used receives each counter's value after
	// the call (unchanged ones when refused). Takes naming the same counter
	// twice are an error.
	TakeQuota(ctx context.Context, takes []QuotaTake) (ok bool, used []int64, err error)
	// QuotaUsed returns a counter's value (0 for an absent counter).
	QuotaUsed(ctx context.Context, key string, windowStart time.Time) (int64, error)
}

// QuotaTake is one counter of a TakeQuota call.
type QuotaTake struct {
	Key         string
	WindowStart time.Time
	Limit       int64
	N           int64
}
