package store

import (
	"context"
	"time"
)

// AuditStore is the queryable index of the audit trail. The signed log on
// each node's disk is the source of truth; the index is filled from it
// asynchronously and can always be rebuilt from it.
type AuditStore interface {
	// InsertAudit stores entries and moves the index position to pos in
	// one transaction, so a crash or outage between batches neither loses
	// nor duplicates records. Entries whose Seq is already stored are
	// skipped.
	// The entries belong to the log pos.LogID: every gateway node has its
	// own log, with its own sequence numbers.
	InsertAudit(ctx context.Context, entries []AuditEntry, pos AuditPosition) error
	// AuditPosition returns where indexing of log logID stopped (zero,
	// with LogID set, before its first batch).
	AuditPosition(ctx context.Context, logID string) (AuditPosition, error)
	// QueryAudit returns matching entries of every log, newest first, at most q.Limit
	// (default 100, at most 10000).
	QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
}

// AuditPosition is a place in the signed log: the next byte to read in
// segment number Segment, and the last sequence number indexed.
type AuditPosition struct {
	LogID   string
	Segment int
	Offset  int64
	Seq     uint64
}

// AuditEntry is one indexed record: the queryable fields and the record's
// full JSON line.
type AuditEntry struct {
	LogID        string // the node's log (set from the position on insert)
	Seq          uint64
	Time         time.Time
	Type         string // request, admin, system
	RequestID    string
	Consumer     string
	Partner      string
	CredentialID string
	API          string
	Version      string
	Operation    string
	Method       string
	Path         string
	ClientIP     string
	Status       int
	Decision     string
	Stage        string
	Reason       string
	LatencyUS    int64
	Record       string
}

// AuditQuery filters QueryAudit; zero fields match everything.
type AuditQuery struct {
	Consumer, Partner, API, Decision string
	Status                           int
	Since, Until                     time.Time // Since inclusive, Until exclusive
	Limit                            int
}

// AuditLimit applies QueryAudit's default and cap.
func (q AuditQuery) AuditLimit() int {
	switch {
	case q.Limit <= 0:
		return 100
	case q.Limit > 10000:
		return 10000
	}
	return q.Limit
}

// AuditStats aggregates the audit index for governance: who called what,
// what nobody routes, and per-API health. Only request records count.
type AuditStats interface {
	// AuditCalls groups allowed requests since the given time by
	// consumer, partner, credential, API, version and operation.
	AuditCalls(ctx context.Context, since time.Time) ([]AuditCallCount, error)
	// AuditUnrouted groups requests no route matched (404 at the route
	// stage) since the given time by path, most called first, at most limit.
	AuditUnrouted(ctx context.Context, since time.Time, limit int) ([]AuditPathCount, error)
	// AuditAPIStats gives per API version: requests, distinct consumers,
	// denials and upstream errors since the given time.
	AuditAPIStats(ctx context.Context, since time.Time) ([]AuditAPIStat, error)
	// AuditFlagged counts request records since the given time whose
	// anomalies include flag, by API, version and operation.
	AuditFlagged(ctx context.Context, since time.Time, flag string) ([]AuditCallCount, error)
}

// AuditCallCount is one group of AuditCalls.
type AuditCallCount struct {
	Consumer, Partner, CredentialID string
	API, Version, Operation         string
	Calls                           int64
	Last                            time.Time
}

// AuditPathCount is one group of AuditUnrouted.
type AuditPathCount struct {
	Path  string
	Calls int64
	Last  time.Time
}

// AuditAPIStat is one API version's traffic in AuditAPIStats.
type AuditAPIStat struct {
	API, Version string
	Requests     int64
	Consumers    int64
	Denied       int64
	Errors       int64 // decision error (upstream failures) or status >= 500
}
