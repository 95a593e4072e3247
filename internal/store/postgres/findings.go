package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/gatehouse/gatehouse/internal/store"
)

// SyncFindings implements store.FindingStore.
func (s *Store) SyncFindings(ctx context.Context, now time.Time, fs []store.Finding) (opened, resolved int, err error) {
	at := ts(now)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		opened, resolved = 0, 0
		// Two concurrent audit runs would each resolve what the other
		// just opened; one at a time.
		if _, err := tx.Exec(ctx, `LOCK TABLE findings IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		seen := make(map[[2]string]bool, len(fs))
		for _, f := range fs {
			key := [2]string{f.Rule, f.Subject}
			if seen[key] {
				continue
			}
			seen[key] = true
			var wasOpen bool
			err := tx.QueryRow(ctx, `SELECT resolved_at IS NULL FROM findings WHERE rule = $1 AND subject = $2`,
				f.Rule, f.Subject).Scan(&wasOpen)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if !wasOpen {
				opened++
			}
			if _, err := tx.Exec(ctx, `INSERT INTO findings
				(rule, subject, severity, title, evidence, fix, first_seen, last_seen, resolved_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $7, NULL)
				ON CONFLICT (rule, subject) DO UPDATE SET severity = EXCLUDED.severity, title = EXCLUDED.title,
					evidence = EXCLUDED.evidence, fix = EXCLUDED.fix, last_seen = EXCLUDED.last_seen, resolved_at = NULL`,
				f.Rule, f.Subject, f.Severity, f.Title, f.Evidence, f.Fix, at); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, `SELECT rule, subject FROM findings WHERE resolved_at IS NULL`)
		if err != nil {
			return err
		}
		var gone [][2]string
		for rows.Next() {
			var k [2]string
			if err := rows.Scan(&k[0], &k[1]); err != nil {
				rows.Close()
				return err
			}
			if !seen[k] {
				gone = append(gone, k)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, k := range gone {
			if _, err := tx.Exec(ctx, `UPDATE findings SET resolved_at = $1 WHERE rule = $2 AND subject = $3`,
				at, k[0], k[1]); err != nil {
				return err
			}
		}
		resolved = len(gone)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: sync findings: %w", err)
	}
	return opened, resolved, nil
}

// ListFindings implements store.FindingStore.
func (s *Store) ListFindings(ctx context.Context, includeResolved bool) ([]store.Finding, error) {
	q := `SELECT rule, subject, severity, title, evidence, fix, first_seen, last_seen, resolved_at FROM findings`
	if !includeResolved {
		q += ` WHERE resolved_at IS NULL`
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY rule COLLATE "C", subject COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list findings: %w", err)
	}
	defer rows.Close()
	var out []store.Finding
	for rows.Next() {
		var (
			f           store.Finding
			first, last time.Time
			res         pgtype.Timestamptz
		)
		if err := rows.Scan(&f.Rule, &f.Subject, &f.Severity, &f.Title, &f.Evidence, &f.Fix, &first, &last, &res); err != nil {
			return nil, fmt.Errorf("postgres: list findings: %w", err)
		}
		f.FirstSeen, f.LastSeen, f.ResolvedAt = first.UTC(), last.UTC(), fromNullTS(res)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list findings: %w", err)
	}
	return out, nil
}
