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

// LiftRevocation implements store.RevocationStore.
func (s *Store) LiftRevocation(ctx context.Context, kind, subject string, at time.Time, by, reason string) error {
	reason, by, err := store.SealRevocation(s.keys, store.Revocation{Kind: kind, Subject: subject, Reason: reason, CreatedBy: by})
	if err != nil {
		return fmt.Errorf("postgres: lift revocation: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Same serialisation as AddRevocation: seq order is commit order.
		if _, err := tx.Exec(ctx, `LOCK TABLE revocations IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE revocations SET seq = DEFAULT, expires_at = $3, reason = $4, created_by = $5
			WHERE kind = $1 AND subject = $2`, kind, subject, ts(at), reason, by)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: lift revocation: %w", err)
	}
	return nil
}

// CreateIncident implements store.IncidentStore.
func (s *Store) CreateIncident(ctx context.Context, inc store.Incident) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO incidents (id, scope, subject, reason, opened_at, opened_by, closed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
			inc.ID, inc.Scope, inc.Subject, inc.Reason, ts(inc.OpenedAt), inc.OpenedBy, nullTS(inc.ClosedAt))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
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
		return fmt.Errorf("postgres: create incident: %w", err)
	}
	return nil
}

func insertEvent(ctx context.Context, tx pgx.Tx, id string, n int, ev store.IncidentEvent) error {
	_, err := tx.Exec(ctx, `INSERT INTO incident_events (incident_id, n, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		id, n, ts(ev.At), ev.Actor, ev.Action, ev.Detail)
	return err
}

func addEvent(ctx context.Context, tx pgx.Tx, id string, ev store.IncidentEvent) error {
	// Locking the incident row serialises appends, so n stays dense.
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM incidents WHERE id = $1 FOR UPDATE`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(n), 0) FROM incident_events WHERE incident_id = $1`, id).Scan(&n); err != nil {
		return err
	}
	return insertEvent(ctx, tx, id, n+1, ev)
}

// AddIncidentEvent implements store.IncidentStore.
func (s *Store) AddIncidentEvent(ctx context.Context, id string, ev store.IncidentEvent) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return addEvent(ctx, tx, id, ev) })
	if err != nil {
		return fmt.Errorf("postgres: add incident event: %w", err)
	}
	return nil
}

// CloseIncident implements store.IncidentStore.
func (s *Store) CloseIncident(ctx context.Context, id string, at time.Time, by, note string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var closed pgtype.Timestamptz
		err := tx.QueryRow(ctx, `SELECT closed_at FROM incidents WHERE id = $1 FOR UPDATE`, id).Scan(&closed)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		if closed.Valid {
			return store.ErrConflict
		}
		if _, err := tx.Exec(ctx, `UPDATE incidents SET closed_at = $1 WHERE id = $2`, ts(at), id); err != nil {
			return err
		}
		return addEvent(ctx, tx, id, store.IncidentEvent{At: at, Actor: by, Action: "closed", Detail: note})
	})
	if err != nil {
		return fmt.Errorf("postgres: close incident: %w", err)
	}
	return nil
}

// GetIncident implements store.IncidentStore.
func (s *Store) GetIncident(ctx context.Context, id string) (store.Incident, error) {
	inc, err := scanIncident(s.pool.QueryRow(ctx,
		`SELECT id, scope, subject, reason, opened_at, opened_by, closed_at FROM incidents WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Incident{}, store.ErrNotFound
	}
	if err != nil {
		return store.Incident{}, fmt.Errorf("postgres: get incident: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT at, actor, action, detail FROM incident_events WHERE incident_id = $1 ORDER BY n`, id)
	if err != nil {
		return store.Incident{}, fmt.Errorf("postgres: get incident: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ev store.IncidentEvent
		var at time.Time
		if err := rows.Scan(&at, &ev.Actor, &ev.Action, &ev.Detail); err != nil {
			return store.Incident{}, fmt.Errorf("postgres: get incident: %w", err)
		}
		ev.At = at.UTC()
		inc.Events = append(inc.Events, ev)
	}
	if err := rows.Err(); err != nil {
		return store.Incident{}, fmt.Errorf("postgres: get incident: %w", err)
	}
	return inc, nil
}

func scanIncident(row pgx.Row) (store.Incident, error) {
	var (
		inc    store.Incident
		opened time.Time
		closed pgtype.Timestamptz
	)
	if err := row.Scan(&inc.ID, &inc.Scope, &inc.Subject, &inc.Reason, &opened, &inc.OpenedBy, &closed); err != nil {
		return store.Incident{}, err
	}
	inc.OpenedAt, inc.ClosedAt = opened.UTC(), fromNullTS(closed)
	return inc, nil
}

// ListIncidents implements store.IncidentStore.
func (s *Store) ListIncidents(ctx context.Context, all bool) ([]store.Incident, error) {
	q := `SELECT id, scope, subject, reason, opened_at, opened_by, closed_at FROM incidents`
	if !all {
		q += ` WHERE closed_at IS NULL`
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY opened_at DESC, id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list incidents: %w", err)
	}
	defer rows.Close()
	var out []store.Incident
	for rows.Next() {
		inc, err := scanIncident(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: list incidents: %w", err)
		}
		out = append(out, inc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list incidents: %w", err)
	}
	return out, nil
}
