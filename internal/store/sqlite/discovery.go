package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// UpsertDiscovery implements store.DiscoveryStore.
func (s *Store) UpsertDiscovery(ctx context.Context, entries []store.DiscoveredEndpoint) error {
	if err := store.CheckDiscovered(entries); err != nil {
		return fmt.Errorf("sqlite: upsert discovery: %w", err)
	}
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		for _, e := range entries {
			_, err := tx.ExecContext(ctx, `INSERT INTO discovery_endpoints
				(host, method, template, count, status_2xx, status_3xx, status_4xx, status_5xx, first_seen, last_seen, body_schema)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (host, method, template) DO UPDATE SET
					count = count + excluded.count,
					status_2xx = status_2xx + excluded.status_2xx,
					status_3xx = status_3xx + excluded.status_3xx,
					status_4xx = status_4xx + excluded.status_4xx,
					status_5xx = status_5xx + excluded.status_5xx,
					first_seen = min(first_seen, excluded.first_seen),
					last_seen = max(last_seen, excluded.last_seen),
					body_schema = CASE WHEN excluded.body_schema <> '' THEN excluded.body_schema ELSE body_schema END`,
				e.Host, e.Method, e.Template, e.Count, e.Status1xx2xx, e.Status3xx, e.Status4xx, e.Status5xx,
				micros(e.FirstSeen), micros(e.LastSeen), e.BodySchema)
			if err != nil {
				return err
			}
			for _, c := range e.Callers {
				_, err := tx.ExecContext(ctx, `INSERT INTO discovery_callers
					(host, method, template, consumer, partner, count, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)
					ON CONFLICT (host, method, template, consumer, partner) DO UPDATE SET
						count = count + excluded.count,
						last_seen = max(last_seen, excluded.last_seen)`,
					e.Host, e.Method, e.Template, c.Consumer, c.Partner, c.Count, micros(c.LastSeen))
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: upsert discovery: %w", err)
	}
	return nil
}

// ListDiscovery implements store.DiscoveryStore.
func (s *Store) ListDiscovery(ctx context.Context, f store.DiscoveryFilter) ([]store.DiscoveredEndpoint, error) {
	out, err := s.listDiscovery(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list discovery: %w", err)
	}
	return out, nil
}

func (s *Store) listDiscovery(ctx context.Context, f store.DiscoveryFilter) ([]store.DiscoveredEndpoint, error) {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	since := int64(-1 << 62)
	if !f.SeenSince.IsZero() {
		since = micros(f.SeenSince)
	}
	rows, err := tx.QueryContext(ctx, `SELECT host, method, template, count, status_2xx, status_3xx, status_4xx, status_5xx,
		first_seen, last_seen, body_schema FROM discovery_endpoints
		WHERE (? = '' OR host = ?) AND last_seen >= ?
		ORDER BY host, template, method`, f.Host, f.Host, since)
	if err != nil {
		return nil, err
	}
	var out []store.DiscoveredEndpoint
	index := map[[3]string]int{}
	for rows.Next() {
		var e store.DiscoveredEndpoint
		var first, last int64
		if err := rows.Scan(&e.Host, &e.Method, &e.Template, &e.Count, &e.Status1xx2xx, &e.Status3xx, &e.Status4xx, &e.Status5xx, &first, &last, &e.BodySchema); err != nil {
			rows.Close()
			return nil, err
		}
		e.FirstSeen, e.LastSeen = fromMicros(first), fromMicros(last)
		index[[3]string{e.Host, e.Method, e.Template}] = len(out)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	crows, err := tx.QueryContext(ctx, `SELECT host, method, template, consumer, partner, count, last_seen
		FROM discovery_callers WHERE (? = '' OR host = ?) ORDER BY consumer, partner`, f.Host, f.Host)
	if err != nil {
		return nil, err
	}
	defer crows.Close()
	for crows.Next() {
		var k [3]string
		var c store.DiscoveredCaller
		var last int64
		if err := crows.Scan(&k[0], &k[1], &k[2], &c.Consumer, &c.Partner, &c.Count, &last); err != nil {
			return nil, err
		}
		c.LastSeen = fromMicros(last)
		if i, ok := index[k]; ok {
			out[i].Callers = append(out[i].Callers, c)
		}
	}
	return out, crows.Err()
}

// PurgeDiscovery implements store.DiscoveryStore.
func (s *Store) PurgeDiscovery(ctx context.Context, lastSeenBefore time.Time) (int64, error) {
	var n int64
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM discovery_endpoints WHERE last_seen < ?`, micros(lastSeenBefore))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: purge discovery: %w", err)
	}
	return n, nil
}
