package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// AuditCalls implements store.AuditStats.
func (s *Store) AuditCalls(ctx context.Context, since time.Time) ([]store.AuditCallCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT consumer, partner, credential_id, api, version, operation, count(*), max(time)
		FROM audit_records WHERE type = 'request' AND decision = 'allow' AND time >= $1
		GROUP BY consumer, partner, credential_id, api, version, operation`, ts(since))
	if err != nil {
		return nil, fmt.Errorf("postgres: audit calls: %w", err)
	}
	defer rows.Close()
	var out []store.AuditCallCount
	for rows.Next() {
		var c store.AuditCallCount
		var last time.Time
		if err := rows.Scan(&c.Consumer, &c.Partner, &c.CredentialID, &c.API, &c.Version, &c.Operation, &c.Calls, &last); err != nil {
			return nil, fmt.Errorf("postgres: audit calls: %w", err)
		}
		c.Last = last.UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// AuditUnrouted implements store.AuditStats.
func (s *Store) AuditUnrouted(ctx context.Context, since time.Time, limit int) ([]store.AuditPathCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT path, count(*), max(time) FROM audit_records
		WHERE type = 'request' AND stage = 'route' AND reason = 'not_found' AND time >= $1
		GROUP BY path ORDER BY count(*) DESC, path COLLATE "C" LIMIT $2`, ts(since), max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("postgres: audit unrouted: %w", err)
	}
	defer rows.Close()
	var out []store.AuditPathCount
	for rows.Next() {
		var p store.AuditPathCount
		var last time.Time
		if err := rows.Scan(&p.Path, &p.Calls, &last); err != nil {
			return nil, fmt.Errorf("postgres: audit unrouted: %w", err)
		}
		p.Last = last.UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// AuditAPIStats implements store.AuditStats.
func (s *Store) AuditAPIStats(ctx context.Context, since time.Time) ([]store.AuditAPIStat, error) {
	rows, err := s.pool.Query(ctx, `SELECT api, version, count(*),
			count(DISTINCT CASE WHEN consumer <> '' THEN consumer END),
			sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END),
			sum(CASE WHEN decision = 'error' OR status >= 500 THEN 1 ELSE 0 END)
		FROM audit_records WHERE type = 'request' AND api <> '' AND time >= $1
		GROUP BY api, version ORDER BY api COLLATE "C", version COLLATE "C"`, ts(since))
	if err != nil {
		return nil, fmt.Errorf("postgres: audit api stats: %w", err)
	}
	defer rows.Close()
	var out []store.AuditAPIStat
	for rows.Next() {
		var a store.AuditAPIStat
		if err := rows.Scan(&a.API, &a.Version, &a.Requests, &a.Consumers, &a.Denied, &a.Errors); err != nil {
			return nil, fmt.Errorf("postgres: audit api stats: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AuditFlagged implements store.AuditStats. Anomaly flags live in the
// record's JSON only: fine for an offline report, not for the hot path.
func (s *Store) AuditFlagged(ctx context.Context, since time.Time, flag string) ([]store.AuditCallCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT api, version, operation, count(*), max(time) FROM audit_records
		WHERE type = 'request' AND time >= $1 AND strpos(record, $2) > 0
		GROUP BY api, version, operation ORDER BY api COLLATE "C", version COLLATE "C", operation COLLATE "C"`, ts(since), `"`+flag+`"`)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit flagged: %w", err)
	}
	defer rows.Close()
	var out []store.AuditCallCount
	for rows.Next() {
		var c store.AuditCallCount
		var last time.Time
		if err := rows.Scan(&c.API, &c.Version, &c.Operation, &c.Calls, &last); err != nil {
			return nil, fmt.Errorf("postgres: audit flagged: %w", err)
		}
		c.Last = last.UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
