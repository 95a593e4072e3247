package store

import (
	"context"
	"time"
)

// DiscoveryStore keeps what traffic discovery observed: per endpoint
// template, counts and times aggregated over every flush of every replica.
type DiscoveryStore interface {
	// UpsertDiscovery adds each entry to the aggregate stored for its
	// (Host, Method, Template): counts are added, FirstSeen keeps the
	// earliest and LastSeen the latest time, and each caller's count and
	// last-seen time are merged the same way. Host, Method and Template must
	// be non-empty (Host may be empty: no Host header), Count positive and the
	// times set. All entries are applied, or none.
	UpsertDiscovery(ctx context.Context, entries []DiscoveredEndpoint) error
	// ListDiscovery returns the aggregates matching f, ordered by host,
	// template, method, each with its callers ordered by consumer, partner.
	ListDiscovery(ctx context.Context, f DiscoveryFilter) ([]DiscoveredEndpoint, error)
	// PurgeDiscovery deletes endpoints (with their callers) last seen
	// before the given time and returns how many were deleted.
	PurgeDiscovery(ctx context.Context, lastSeenBefore time.Time) (int64, error)
}

// DiscoveredEndpoint is the traffic seen on one learned endpoint template,
// e.g. GET api.example.com /orders/{int}.
type DiscoveredEndpoint struct {
	Host     string // lower case, no port; "" when the request named none
	Method   string
	Template string // learned template: literals and {int} {uuid} {hex} {date} {str}
	Count    int64
	// Responses by status class (1xx counted with 2xx).
	Status1xx2xx, Status3xx, Status4xx, Status5xx int64
	FirstSeen, LastSeen                           time.Time
	Callers                                       []DiscoveredCaller
	// BodySchema is the JSON Schema of sampled JSON request bodies ("":
	// none sampled). An upsert with "" keeps the stored one.
	BodySchema string
}

// DiscoveredCaller is one consumer seen calling an endpoint; an empty
// Consumer is an unauthenticated caller.
type DiscoveredCaller struct {
	Consumer string
	Partner  string
	Count    int64
	LastSeen time.Time
}

// DiscoveryFilter narrows ListDiscovery. Empty fields match everything.
type DiscoveryFilter struct {
	Host string
	// SeenSince keeps endpoints whose LastSeen is at or after it.
	SeenSince time.Time
}
