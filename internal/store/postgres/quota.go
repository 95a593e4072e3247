package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/internal/store"
)

// errQuotaRefused rolls back a TakeQuota transaction that one counter refused.
var errQuotaRefused = errors.New("quota refused")

// TakeQuota implements store.QuotaStore. Each counter is an upsert that
// only applies while it stays within its limit; the row lock it takes makes
// concurrent takes of one counter serialise, and the first refusal rolls
// the whole call back. Counters are locked in key order so two calls
// naming the same counters cannot deadlock.
func (s *Store) TakeQuota(ctx context.Context, takes []store.QuotaTake) (bool, []int64, error) {
	if err := store.CheckQuotaTakes(takes); err != nil {
		return false, nil, err
	}
	used := make([]int64, len(takes))
	if store.QuotaFits(takes) {
		order := make([]int, len(takes))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(takes[a].Key, takes[b].Key) })
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			for _, i := range order {
				t := takes[i]
				err := tx.QueryRow(ctx, `INSERT INTO quotas (key, window_start, used) VALUES ($1, $2, $3)
					ON CONFLICT (key, window_start) DO UPDATE SET used = quotas.used + EXCLUDED.used
					WHERE quotas.used + EXCLUDED.used <= $4
					RETURNING used`, t.Key, t.WindowStart.Unix(), t.N, t.Limit).Scan(&used[i])
				if errors.Is(err, pgx.ErrNoRows) {
					return errQuotaRefused
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			return true, used, nil
		}
		if !errors.Is(err, errQuotaRefused) {
			return false, nil, fmt.Errorf("postgres: take quota: %w", err)
		}
	}
	for i, t := range takes {
		u, err := s.QuotaUsed(ctx, t.Key, t.WindowStart)
		if err != nil {
			return false, nil, err
		}
		used[i] = u
	}
	return false, used, nil
}

// QuotaUsed implements store.QuotaStore.
func (s *Store) QuotaUsed(ctx context.Context, key string, windowStart time.Time) (int64, error) {
	var used int64
	err := s.pool.QueryRow(ctx, `SELECT used FROM quotas WHERE key = $1 AND window_start = $2`,
		key, windowStart.Unix()).Scan(&used)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: quota used: %w", err)
	}
	return used, nil
}
