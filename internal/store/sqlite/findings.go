package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// SyncFindings implements store.FindingStore.
func (s *Store) SyncFindings(ctx context.Context, now time.Time, fs []store.Finding) (opened, resolved int, err error) {
	at := micros(now)
	err = s.inWriteTx(ctx, func(tx *sql.Tx) error {
		opened, resolved = 0, 0
		seen := make(map[[2]string]bool, len(fs))
		for _, f := range fs {
			key := [2]string{f.Rule, f.Subject}
			if seen[key] {
				continue
			}
			seen[key] = true
			var wasOpen sql.NullBool
			err := tx.QueryRowContext(ctx, `SELECT resolved_at IS NULL FROM findings WHERE rule = ? AND subject = ?`,
				f.Rule, f.Subject).Scan(&wasOpen)
			if err != nil && err != sql.ErrNoRows {
				return err
			}
			if !wasOpen.Valid || !wasOpen.Bool {
				opened++
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO findings
				(rule, subject, severity, title, evidence, fix, first_seen, last_seen, resolved_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)
				ON CONFLICT (rule, subject) DO UPDATE SET severity = excluded.severity, title = excluded.title,
					evidence = excluded.evidence, fix = excluded.fix, last_seen = excluded.last_seen, resolved_at = NULL`,
				f.Rule, f.Subject, f.Severity, f.Title, f.Evidence, f.Fix, at, at); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT rule, subject FROM findings WHERE resolved_at IS NULL`)
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
		if err := rows.Close(); err != nil {
			return err
		}
		for _, k := range gone {
			if _, err := tx.ExecContext(ctx, `UPDATE findings SET resolved_at = ? WHERE rule = ? AND subject = ?`,
				at, k[0], k[1]); err != nil {
				return err
			}
		}
		resolved = len(gone)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: sync findings: %w", err)
	}
	return opened, resolved, nil
}

// ListFindings implements store.FindingStore.
func (s *Store) ListFindings(ctx context.Context, includeResolved bool) ([]store.Finding, error) {
	q := `SELECT rule, subject, severity, title, evidence, fix, first_seen, last_seen, resolved_at FROM findings`
	if !includeResolved {
		q += ` WHERE resolved_at IS NULL`
	}
	rows, err := s.read.QueryContext(ctx, q+` ORDER BY rule, subject`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list findings: %w", err)
	}
	defer rows.Close()
	var out []store.Finding
	for rows.Next() {
		var (
			f           store.Finding
			first, last int64
			res         sql.NullInt64
		)
		if err := rows.Scan(&f.Rule, &f.Subject, &f.Severity, &f.Title, &f.Evidence, &f.Fix, &first, &last, &res); err != nil {
			return nil, fmt.Errorf("sqlite: list findings: %w", err)
		}
		f.FirstSeen, f.LastSeen, f.ResolvedAt = fromMicros(first), fromMicros(last), fromNullMicros(res)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list findings: %w", err)
	}
	return out, nil
}
