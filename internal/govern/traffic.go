package govern

import (
	"context"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// maxUnrouted bounds how many distinct unrouted paths an audit reads: a
// scanner's random paths must not make the audit unbounded.
const maxUnrouted = 10_000

// StoreTraffic reads observed traffic from the store's audit index.
type StoreTraffic struct{ Stats store.AuditStats }

// Calls implements Traffic.
func (t StoreTraffic) Calls(ctx context.Context, since time.Time) ([]CallCount, error) {
	rows, err := t.Stats.AuditCalls(ctx, since)
	if err != nil {
		return nil, err
	}
	out := make([]CallCount, len(rows))
	for i, r := range rows {
		out[i] = CallCount{Consumer: r.Consumer, Partner: r.Partner, Credential: r.CredentialID,
			API: r.API, Version: r.Version, Operation: r.Operation, Calls: r.Calls, Last: r.Last}
	}
	return out, nil
}

// Unrouted implements Traffic. The index keeps no host, so every path
// counts for every host.
func (t StoreTraffic) Unrouted(ctx context.Context, since time.Time) ([]PathCount, error) {
	rows, err := t.Stats.AuditUnrouted(ctx, since, maxUnrouted)
	if err != nil {
		return nil, err
	}
	out := make([]PathCount, 0, len(rows))
	for _, r := range rows {
		path, _, _ := strings.Cut(r.Path, "?") // the index keeps query names
		out = append(out, PathCount{Path: path, Calls: r.Calls, Last: r.Last})
	}
	return out, nil
}

// Windows are the periods live figures are given for.
var Windows = []struct {
	Name string
	D    time.Duration
}{{"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}}

// APITraffic is one API version's traffic in one window.
type APITraffic struct {
	Requests  int64   `json:"requests"`
	Consumers int64   `json:"consumers"`
	Denied    int64   `json:"denied"`
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"error_rate_percent"`
}

// LiveTraffic returns, per "name@version", the figures of every window
// from the audit index.
func LiveTraffic(ctx context.Context, st store.AuditStats, now time.Time) (map[string]map[string]*APITraffic, error) {
	out := map[string]map[string]*APITraffic{}
	for _, w := range Windows {
		stats, err := st.AuditAPIStats(ctx, now.Add(-w.D))
		if err != nil {
			return nil, err
		}
		for _, s := range stats {
			k := s.API + "@" + s.Version
			if out[k] == nil {
				out[k] = map[string]*APITraffic{}
			}
			t := &APITraffic{Requests: s.Requests, Consumers: s.Consumers, Denied: s.Denied, Errors: s.Errors}
			if s.Requests > 0 {
				t.ErrorRate = float64(int64(1000*float64(s.Errors)/float64(s.Requests))) / 10
			}
			out[k][w.Name] = t
		}
	}
	return out, nil
}
