package discover

import (
	"context"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/store"
)

// AuditDrift counts, from the audit index, the requests validation let
// through in report mode although they violated their operation's schema.
// Response drift is not recorded yet: filtering in report mode only logs.
type AuditDrift struct {
	Stats store.AuditStats
	Since time.Time
}

// Drift implements DriftSource.
func (d AuditDrift) Drift(ctx context.Context) ([]Drift, error) {
	rows, err := d.Stats.AuditFlagged(ctx, d.Since, audit.AnomalySpecDrift)
	if err != nil {
		return nil, err
	}
	out := make([]Drift, 0, len(rows))
	for _, r := range rows {
		out = append(out, Drift{API: r.API, Version: r.Version, OperationID: r.Operation, RequestViolations: r.Calls})
	}
	return out, nil
}
