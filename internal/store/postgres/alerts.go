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

const alertColumns = `id, detector, severity, subject, summary, evidence, count, first_at, last_at, acked_at, acked_by, response, reverted_at`

// SaveAlert implements store.AlertStore.
func (s *Store) SaveAlert(ctx context.Context, a store.Alert) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO alerts (`+alertColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (id) DO UPDATE SET detector = EXCLUDED.detector, severity = EXCLUDED.severity, subject = EXCLUDED.subject,
			summary = EXCLUDED.summary, evidence = EXCLUDED.evidence, count = EXCLUDED.count, first_at = EXCLUDED.first_at,
			last_at = EXCLUDED.last_at, acked_at = EXCLUDED.acked_at, acked_by = EXCLUDED.acked_by,
			response = EXCLUDED.response, reverted_at = EXCLUDED.reverted_at`,
		a.ID, a.Detector, a.Severity, a.Subject, a.Summary, a.Evidence, a.Count, ts(a.FirstAt), ts(a.LastAt),
		nullTS(a.AckedAt), a.AckedBy, a.Response, nullTS(a.RevertedAt))
	if err != nil {
		return fmt.Errorf("postgres: save alert: %w", err)
	}
	return nil
}

func scanAlert(row pgx.Row) (store.Alert, error) {
	var (
		a             store.Alert
		first, last   time.Time
		acked, revert pgtype.Timestamptz
	)
	if err := row.Scan(&a.ID, &a.Detector, &a.Severity, &a.Subject, &a.Summary, &a.Evidence, &a.Count, &first, &last,
		&acked, &a.AckedBy, &a.Response, &revert); err != nil {
		return store.Alert{}, err
	}
	a.FirstAt, a.LastAt, a.AckedAt, a.RevertedAt = first.UTC(), last.UTC(), fromNullTS(acked), fromNullTS(revert)
	return a, nil
}

// GetAlert implements store.AlertStore.
func (s *Store) GetAlert(ctx context.Context, id string) (store.Alert, error) {
	a, err := scanAlert(s.pool.QueryRow(ctx, `SELECT `+alertColumns+` FROM alerts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Alert{}, store.ErrNotFound
	}
	if err != nil {
		return store.Alert{}, fmt.Errorf("postgres: get alert: %w", err)
	}
	return a, nil
}

// ListAlerts implements store.AlertStore.
func (s *Store) ListAlerts(ctx context.Context, all bool, limit int) ([]store.Alert, error) {
	if limit <= 0 {
		limit = 1000
	}
	q := `SELECT ` + alertColumns + ` FROM alerts`
	if !all {
		q += ` WHERE acked_at IS NULL`
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY last_at DESC, id COLLATE "C" LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list alerts: %w", err)
	}
	defer rows.Close()
	var out []store.Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: list alerts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list alerts: %w", err)
	}
	return out, nil
}

// AckAlert implements store.AlertStore.
func (s *Store) AckAlert(ctx context.Context, id, by string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE alerts SET acked_by = CASE WHEN acked_at IS NULL THEN $2 ELSE acked_by END,
		acked_at = coalesce(acked_at, $3) WHERE id = $1`, id, by, ts(at))
	if err != nil {
		return fmt.Errorf("postgres: ack alert: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}
