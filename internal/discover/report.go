package discover

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// Report is what `gatehouse discover report` prints.
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	// ObservedSince is the earliest observation: an operation can only be
	// called an orphan for as long as traffic has been watched.
	ObservedSince time.Time         `json:"observed_since,omitzero"`
	OrphanDays    int               `json:"orphan_days"`
	Shadow        []ShadowEndpoint  `json:"shadow"`
	Zombie        []ZombieEndpoint  `json:"zombie"`
	Orphans       []OrphanOperation `json:"orphans"`
	// Drift lists spec violations by operation. Empty until request
	// validation in report mode feeds a DriftSource.
	Drift []Drift `json:"drift"`
}

// ShadowEndpoint is traffic to an endpoint no registered spec declares.
type ShadowEndpoint struct {
	Host      string    `json:"host"`
	Method    string    `json:"method"`
	Template  string    `json:"template"`
	Reason    string    `json:"reason"` // undeclared_path | undeclared_method
	Count     int64     `json:"count"`
	Status    Statuses  `json:"status"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Callers   []Caller  `json:"callers,omitempty"`
}

// ZombieEndpoint is traffic to an operation of a deprecated or retired API.
type ZombieEndpoint struct {
	API         string    `json:"api"`
	Version     string    `json:"version"`
	Lifecycle   string    `json:"lifecycle"`
	OperationID string    `json:"operation"`
	Method      string    `json:"method"`
	Template    string    `json:"template"`
	Count       int64     `json:"count"`
	LastSeen    time.Time `json:"last_seen"`
	Callers     []Caller  `json:"callers"`
}

// OrphanOperation is a registered operation without traffic for OrphanDays.
type OrphanOperation struct {
	API         string    `json:"api"`
	Version     string    `json:"version"`
	Lifecycle   string    `json:"lifecycle"`
	OperationID string    `json:"operation"`
	Method      string    `json:"method"`
	Template    string    `json:"template"`
	LastSeen    time.Time `json:"last_seen,omitzero"` // zero: never seen
}

// Caller is a consumer seen on an endpoint; empty Consumer is anonymous.
type Caller struct {
	Consumer string    `json:"consumer"`
	Partner  string    `json:"partner,omitempty"`
	Count    int64     `json:"count"`
	LastSeen time.Time `json:"last_seen"`
}

// Statuses counts responses by class.
type Statuses struct {
	S2xx int64 `json:"2xx"`
	S3xx int64 `json:"3xx"`
	S4xx int64 `json:"4xx"`
	S5xx int64 `json:"5xx"`
}

// Drift is the spec violations seen on one operation.
type Drift struct {
	API                string `json:"api"`
	Version            string `json:"version"`
	OperationID        string `json:"operation"`
	RequestViolations  int64  `json:"request_violations"`
	ResponseViolations int64  `json:"response_violations"`
}

// DriftSource supplies spec-violation counts per operation (AuditDrift
// reads them from the audit trail).
type DriftSource interface {
	Drift(ctx context.Context) ([]Drift, error)
}

// Analyze compares observations with the catalog. orphanAfter is how long
// without traffic makes a registered operation an orphan.
func Analyze(ctx context.Context, cat *Catalog, obs []store.DiscoveredEndpoint, now time.Time, orphanAfter time.Duration, drift DriftSource) (Report, error) {
	r := Report{GeneratedAt: now.UTC(), OrphanDays: int(orphanAfter / (24 * time.Hour)),
		Shadow: []ShadowEndpoint{}, Zombie: []ZombieEndpoint{}, Orphans: []OrphanOperation{}, Drift: []Drift{}}
	lastSeen := map[*RegisteredOp]time.Time{}
	zombies := map[*RegisteredOp]*ZombieEndpoint{}
	for _, e := range MergeShapes(obs) {
		if r.ObservedSince.IsZero() || e.FirstSeen.Before(r.ObservedSince) {
			r.ObservedSince = e.FirstSeen
		}
		op, st := cat.Match(e.Host, e.Method, e.Template)
		if st != Declared {
			reason := "undeclared_path"
			if st == MethodUndeclared {
				reason = "undeclared_method"
			}
			r.Shadow = append(r.Shadow, ShadowEndpoint{Host: e.Host, Method: e.Method, Template: e.Template, Reason: reason,
				Count: e.Count, Status: Statuses{e.Status1xx2xx, e.Status3xx, e.Status4xx, e.Status5xx},
				FirstSeen: e.FirstSeen, LastSeen: e.LastSeen, Callers: callers(nil, e.Callers)})
			continue
		}
		if e.LastSeen.After(lastSeen[op]) {
			lastSeen[op] = e.LastSeen
		}
		if op.Lifecycle == "deprecated" || op.Lifecycle == "retired" {
			z := zombies[op]
			if z == nil {
				z = &ZombieEndpoint{API: op.API, Version: op.Version, Lifecycle: op.Lifecycle, OperationID: op.OperationID,
					Method: op.Method, Template: op.Template}
				zombies[op] = z
			}
			z.Count += e.Count
			if e.LastSeen.After(z.LastSeen) {
				z.LastSeen = e.LastSeen
			}
			z.Callers = callers(z.Callers, e.Callers)
		}
	}
	for _, z := range zombies {
		r.Zombie = append(r.Zombie, *z)
	}
	sort.Slice(r.Zombie, func(i, j int) bool {
		a, b := r.Zombie[i], r.Zombie[j]
		if a.API != b.API {
			return a.API < b.API
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.OperationID < b.OperationID
	})
	cutoff := now.Add(-orphanAfter)
	for _, op := range cat.Ops {
		if op.Lifecycle == "retired" {
			continue // no traffic is what retirement wants
		}
		if ls := lastSeen[op]; ls.IsZero() || ls.Before(cutoff) {
			r.Orphans = append(r.Orphans, OrphanOperation{API: op.API, Version: op.Version, Lifecycle: op.Lifecycle,
				OperationID: op.OperationID, Method: op.Method, Template: op.Template, LastSeen: ls})
		}
	}
	if drift != nil {
		d, err := drift.Drift(ctx)
		if err != nil {
			return r, err
		}
		r.Drift = append(r.Drift, d...)
	}
	return r, nil
}

// callers merges observed callers into dst by (consumer, partner).
func callers(dst []Caller, src []store.DiscoveredCaller) []Caller {
next:
	for _, c := range src {
		for i := range dst {
			if dst[i].Consumer == c.Consumer && dst[i].Partner == c.Partner {
				dst[i].Count += c.Count
				if c.LastSeen.After(dst[i].LastSeen) {
					dst[i].LastSeen = c.LastSeen
				}
				continue next
			}
		}
		dst = append(dst, Caller{Consumer: c.Consumer, Partner: c.Partner, Count: c.Count, LastSeen: c.LastSeen})
	}
	sort.Slice(dst, func(i, j int) bool {
		if dst[i].Consumer != dst[j].Consumer {
			return dst[i].Consumer < dst[j].Consumer
		}
		return dst[i].Partner < dst[j].Partner
	})
	return dst
}

// MergeShapes folds stored rows that differ only in parameter kinds (a
// position seen as {int} in one flush and {str} in a later one) into one
// row per (host, method, shape), with each position's kinds united.
func MergeShapes(obs []store.DiscoveredEndpoint) []store.DiscoveredEndpoint {
	type key struct{ host, method, shape string }
	idx := map[key]int{}
	var out []store.DiscoveredEndpoint
	for _, e := range obs {
		k := key{e.Host, e.Method, Shape(e.Template)}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			e.Callers = append([]store.DiscoveredCaller(nil), e.Callers...)
			out = append(out, e)
			continue
		}
		m := &out[i]
		m.Template = unionTemplate(m.Template, e.Template)
		m.Count += e.Count
		m.Status1xx2xx += e.Status1xx2xx
		m.Status3xx += e.Status3xx
		m.Status4xx += e.Status4xx
		m.Status5xx += e.Status5xx
		if e.FirstSeen.Before(m.FirstSeen) {
			m.FirstSeen = e.FirstSeen
		}
		if e.LastSeen.After(m.LastSeen) {
			m.LastSeen = e.LastSeen
		}
		m.Callers = append(m.Callers, e.Callers...)
	}
	return out
}

// unionTemplate unites the kinds of two templates of one shape.
func unionTemplate(a, b string) string {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := range as {
		ka, oka := kindOfToken(as[i])
		kb, okb := kindOfToken(bs[i])
		if oka && okb && ka != kb {
			as[i] = kindOfSet(kindBit(ka) | kindBit(kb)).Token()
		}
	}
	return strings.Join(as, "/")
}
