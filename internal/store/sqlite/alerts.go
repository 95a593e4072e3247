package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

const alertColumns = `id, detector, severity, subject, summary, evidence, count, first_at, last_at, acked_at, acked_by, response, reverted_at`

// SaveAlert implements store.AlertStore.
func (s *Store) SaveAlert(ctx context.Context, a store.Alert) error {
	_, err := s.write.ExecContext(ctx, `INSERT INTO alerts (`+alertColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET detector = excluded.detector, severity = excluded.severity, subject = excluded.subject,
			summary = excluded.summary, evidence = excluded.evidence, count = excluded.count, first_at = excluded.first_at,
			last_at = excluded.last_at, acked_at = excluded.acked_at, acked_by = excluded.acked_by,
			response = excluded.response, reverted_at = excluded.reverted_at`,
		a.ID, a.Detector, a.Severity, a.Subject, a.Summary, a.Evidence, a.Count, micros(a.FirstAt), micros(a.LastAt),
		nullMicros(a.AckedAt), a.AckedBy, a.Response, nullMicros(a.RevertedAt))
	if err != nil {
		return fmt.Errorf("sqlite: save alert: %w", err)
	}
	return nil
}

func scanAlert(row scanner) (store.Alert, error) {
	var (
		a             store.Alert
		first, last   int64
		acked, revert sql.NullInt64
	)
	if err := row.Scan(&a.ID, &a.Detector, &a.Severity, &a.Subject, &a.Summary, &a.Evidence, &a.Count, &first, &last,
		&acked, &a.AckedBy, &a.Response, &revert); err != nil {
		return store.Alert{}, err
	}
	a.FirstAt, a.LastAt, a.AckedAt, a.RevertedAt = fromMicros(first), fromMicros(last), fromNullMicros(acked), fromNullMicros(revert)
	return a, nil
}

// GetAlert implements store.AlertStore.
func (s *Store) GetAlert(ctx context.Context, id string) (store.Alert, error) {
	a, err := scanAlert(s.read.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Alert{}, store.ErrNotFound
	}
	if err != nil {
		return store.Alert{}, fmt.Errorf("sqlite: get alert: %w", err)
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
	rows, err := s.read.QueryContext(ctx, q+` ORDER BY last_at DESC, id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list alerts: %w", err)
	}
	defer rows.Close()
	var out []store.Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list alerts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list alerts: %w", err)
	}
	return out, nil
}

// AckAlert implements store.AlertStore.
func (s *Store) AckAlert(ctx context.Context, id, by string, at time.Time) error {
	res, err := s.write.ExecContext(ctx, `UPDATE alerts SET acked_at = coalesce(acked_at, ?),
		acked_by = CASE WHEN acked_at IS NULL THEN ? ELSE acked_by END WHERE id = ?`, micros(at), by, id)
	if err != nil {
		return fmt.Errorf("sqlite: ack alert: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: ack alert: %w", err)
	} else if n == 0 {
		return store.ErrNotFound
	}
	return nil
}
