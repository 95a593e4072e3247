package discover

import (
	"context"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/store"
)

// AuditDrift counts, from the audit index, the requests validation let
// through in report mode although they violated their operation's schema,
// and the responses report-mode filtering passed with undocumented fields.
type AuditDrift struct {
	Stats store.AuditStats
	Since time.Time
}

// Drift implements DriftSource.
func (d AuditDrift) Drift(ctx context.Context) ([]Drift, error) {
	reqs, err := d.Stats.AuditFlagged(ctx, d.Since, audit.AnomalySpecDrift)
	if err != nil {
		return nil, err
	}
	resps, err := d.Stats.AuditFlagged(ctx, d.Since, audit.AnomalySpecDriftResponse)
	if err != nil {
		return nil, err
	}
	index := map[[3]string]int{}
	var out []Drift
	get := func(r store.AuditCallCount) *Drift {
		k := [3]string{r.API, r.Version, r.Operation}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, Drift{API: r.API, Version: r.Version, OperationID: r.Operation})
		}
		return &out[i]
	}
	for _, r := range reqs {
		get(r).RequestViolations = r.Calls
	}
	for _, r := range resps {
		get(r).ResponseViolations = r.Calls
	}
	return out, nil
}
