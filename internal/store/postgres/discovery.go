package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/internal/store"
)

// UpsertDiscovery implements store.DiscoveryStore.
func (s *Store) UpsertDiscovery(ctx context.Context, entries []store.DiscoveredEndpoint) error {
	if err := store.CheckDiscovered(entries); err != nil {
		return fmt.Errorf("postgres: upsert discovery: %w", err)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, e := range entries {
			b.Queue(`INSERT INTO discovery_endpoints
				(host, method, template, count, status_2xx, status_3xx, status_4xx, status_5xx, first_seen, last_seen, body_schema)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
				ON CONFLICT (host, method, template) DO UPDATE SET
					count = discovery_endpoints.count + excluded.count,
					status_2xx = discovery_endpoints.status_2xx + excluded.status_2xx,
					status_3xx = discovery_endpoints.status_3xx + excluded.status_3xx,
					status_4xx = discovery_endpoints.status_4xx + excluded.status_4xx,
					status_5xx = discovery_endpoints.status_5xx + excluded.status_5xx,
					first_seen = least(discovery_endpoints.first_seen, excluded.first_seen),
					last_seen = greatest(discovery_endpoints.last_seen, excluded.last_seen),
					body_schema = CASE WHEN excluded.body_schema <> '' THEN excluded.body_schema ELSE discovery_endpoints.body_schema END`,
				e.Host, e.Method, e.Template, e.Count, e.Status1xx2xx, e.Status3xx, e.Status4xx, e.Status5xx,
				ts(e.FirstSeen), ts(e.LastSeen), e.BodySchema)
			for _, c := range e.Callers {
				b.Queue(`INSERT INTO discovery_callers
					(host, method, template, consumer, partner, count, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7)
					ON CONFLICT (host, method, template, consumer, partner) DO UPDATE SET
						count = discovery_callers.count + excluded.count,
						last_seen = greatest(discovery_callers.last_seen, excluded.last_seen)`,
					e.Host, e.Method, e.Template, c.Consumer, c.Partner, c.Count, ts(c.LastSeen))
			}
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: upsert discovery: %w", err)
	}
	return nil
}

// ListDiscovery implements store.DiscoveryStore.
func (s *Store) ListDiscovery(ctx context.Context, f store.DiscoveryFilter) ([]store.DiscoveredEndpoint, error) {
	var out []store.DiscoveredEndpoint
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		since := time.Unix(0, 0).UTC()
		if !f.SeenSince.IsZero() {
			since = ts(f.SeenSince)
		}
		rows, err := tx.Query(ctx, `SELECT host, method, template, count, status_2xx, status_3xx, status_4xx, status_5xx,
			first_seen, last_seen, body_schema FROM discovery_endpoints
			WHERE ($1 = '' OR host = $1) AND last_seen >= $2
			ORDER BY host, template, method`, f.Host, since)
		if err != nil {
			return err
		}
		index := map[[3]string]int{}
		for rows.Next() {
			var e store.DiscoveredEndpoint
			if err := rows.Scan(&e.Host, &e.Method, &e.Template, &e.Count, &e.Status1xx2xx, &e.Status3xx, &e.Status4xx, &e.Status5xx, &e.FirstSeen, &e.LastSeen, &e.BodySchema); err != nil {
				rows.Close()
				return err
			}
			e.FirstSeen, e.LastSeen = e.FirstSeen.UTC(), e.LastSeen.UTC()
			index[[3]string{e.Host, e.Method, e.Template}] = len(out)
			out = append(out, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		crows, err := tx.Query(ctx, `SELECT host, method, template, consumer, partner, count, last_seen
			FROM discovery_callers WHERE ($1 = '' OR host = $1) ORDER BY consumer, partner`, f.Host)
		if err != nil {
			return err
		}
		defer crows.Close()
		for crows.Next() {
			var k [3]string
			var c store.DiscoveredCaller
			if err := crows.Scan(&k[0], &k[1], &k[2], &c.Consumer, &c.Partner, &c.Count, &c.LastSeen); err != nil {
				return err
			}
			c.LastSeen = c.LastSeen.UTC()
			if i, ok := index[k]; ok {
				out[i].Callers = append(out[i].Callers, c)
			}
		}
		return crows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list discovery: %w", err)
	}
	return out, nil
}

// PurgeDiscovery implements store.DiscoveryStore.
func (s *Store) PurgeDiscovery(ctx context.Context, lastSeenBefore time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM discovery_endpoints WHERE last_seen < $1`, ts(lastSeenBefore))
	if err != nil {
		return 0, fmt.Errorf("postgres: purge discovery: %w", err)
	}
	return tag.RowsAffected(), nil
}
