package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// LiftRevocation implements store.RevocationStore.
func (s *Store) LiftRevocation(ctx context.Context, kind, subject string, at time.Time, by, reason string) error {
	reason, by, err := store.SealRevocation(s.keys, store.Revocation{Kind: kind, Subject: subject, Reason: reason, CreatedBy: by})
	if err != nil {
		return fmt.Errorf("sqlite: lift revocation: %w", err)
	}
	err = s.inWriteTx(ctx, func(tx *sql.Tx) error {
		var createdAt int64
		err := tx.QueryRowContext(ctx, `SELECT created_at FROM revocations WHERE kind = ? AND subject = ?`, kind, subject).Scan(&createdAt)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		// Delete and insert: a fresh AUTOINCREMENT seq that pollers see.
		if _, err := tx.ExecContext(ctx, `DELETE FROM revocations WHERE kind = ? AND subject = ?`, kind, subject); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO revocations (kind, subject, reason, created_at, expires_at, created_by)
			VALUES (?, ?, ?, ?, ?, ?)`, kind, subject, reason, createdAt, micros(at), by)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: lift revocation: %w", err)
	}
	return nil
}

// CreateIncident implements store.IncidentStore.
func (s *Store) CreateIncident(ctx context.Context, inc store.Incident) error {
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO incidents (id, scope, subject, reason, opened_at, opened_by, closed_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			inc.ID, inc.Scope, inc.Subject, inc.Reason, micros(inc.OpenedAt), inc.OpenedBy, nullMicros(inc.ClosedAt))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrConflict
		}
		for i, ev := range inc.Events {
			if err := insertEvent(ctx, tx, inc.ID, i+1, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: create incident: %w", err)
	}
	return nil
}

func insertEvent(ctx context.Context, tx *sql.Tx, id string, n int, ev store.IncidentEvent) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO incident_events (incident_id, n, at, actor, action, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		id, n, micros(ev.At), ev.Actor, ev.Action, ev.Detail)
	return err
}

// AddIncidentEvent implements store.IncidentStore.
func (s *Store) AddIncidentEvent(ctx context.Context, id string, ev store.IncidentEvent) error {
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		return addEvent(ctx, tx, id, ev)
	})
	if err != nil {
		return fmt.Errorf("sqlite: add incident event: %w", err)
	}
	return nil
}

func addEvent(ctx context.Context, tx *sql.Tx, id string, ev store.IncidentEvent) error {
	var n sql.NullInt64
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM incidents WHERE id = ?)`, id).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return store.ErrNotFound
	}
	if err := tx.QueryRowContext(ctx, `SELECT max(n) FROM incident_events WHERE incident_id = ?`, id).Scan(&n); err != nil {
		return err
	}
	return insertEvent(ctx, tx, id, int(n.Int64)+1, ev)
}

// CloseIncident implements store.IncidentStore.
func (s *Store) CloseIncident(ctx context.Context, id string, at time.Time, by, note string) error {
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		var closed sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT closed_at FROM incidents WHERE id = ?`, id).Scan(&closed)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		if closed.Valid {
			return store.ErrConflict
		}
		if _, err := tx.ExecContext(ctx, `UPDATE incidents SET closed_at = ? WHERE id = ?`, micros(at), id); err != nil {
			return err
		}
		return addEvent(ctx, tx, id, store.IncidentEvent{At: at, Actor: by, Action: "closed", Detail: note})
	})
	if err != nil {
		return fmt.Errorf("sqlite: close incident: %w", err)
	}
	return nil
}

// GetIncident implements store.IncidentStore.
func (s *Store) GetIncident(ctx context.Context, id string) (store.Incident, error) {
	row := s.read.QueryRowContext(ctx, `SELECT id, scope, subject, reason, opened_at, opened_by, closed_at FROM incidents WHERE id = ?`, id)
	inc, err := scanIncident(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Incident{}, store.ErrNotFound
	}
	if err != nil {
		return store.Incident{}, fmt.Errorf("sqlite: get incident: %w", err)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT at, actor, action, detail FROM incident_events WHERE incident_id = ? ORDER BY n`, id)
	if err != nil {
		return store.Incident{}, fmt.Errorf("sqlite: get incident: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ev store.IncidentEvent
		var at int64
		if err := rows.Scan(&at, &ev.Actor, &ev.Action, &ev.Detail); err != nil {
			return store.Incident{}, fmt.Errorf("sqlite: get incident: %w", err)
		}
		ev.At = fromMicros(at)
		inc.Events = append(inc.Events, ev)
	}
	if err := rows.Err(); err != nil {
		return store.Incident{}, fmt.Errorf("sqlite: get incident: %w", err)
	}
	return inc, nil
}

func scanIncident(row scanner) (store.Incident, error) {
	var (
		inc    store.Incident
		opened int64
		closed sql.NullInt64
	)
	if err := row.Scan(&inc.ID, &inc.Scope, &inc.Subject, &inc.Reason, &opened, &inc.OpenedBy, &closed); err != nil {
		return store.Incident{}, err
	}
	inc.OpenedAt, inc.ClosedAt = fromMicros(opened), fromNullMicros(closed)
	return inc, nil
}

// ListIncidents implements store.IncidentStore.
func (s *Store) ListIncidents(ctx context.Context, all bool) ([]store.Incident, error) {
	q := `SELECT id, scope, subject, reason, opened_at, opened_by, closed_at FROM incidents`
	if !all {
		q += ` WHERE closed_at IS NULL`
	}
	rows, err := s.read.QueryContext(ctx, q+` ORDER BY opened_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list incidents: %w", err)
	}
	defer rows.Close()
	var out []store.Incident
	for rows.Next() {
		inc, err := scanIncident(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list incidents: %w", err)
		}
		out = append(out, inc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list incidents: %w", err)
	}
	return out, nil
}
