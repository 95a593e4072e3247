package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// errQuotaRefused rolls back a TakeQuota transaction that one counter refused.
var errQuotaRefused = errors.New("quota refused")

// TakeQuota implements store.QuotaStore: one IMMEDIATE transaction, so
// concurrent takes (of this or another process) serialise on the writer.
// Each counter is an upsert that only applies while it stays within its
// limit; the first that does not rolls the whole call back.
func (s *Store) TakeQuota(ctx context.Context, takes []store.QuotaTake) (bool, []int64, error) {
	if err := store.CheckQuotaTakes(takes); err != nil {
		return false, nil, err
	}
	used := make([]int64, len(takes))
	if store.QuotaFits(takes) {
		err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
			for i, t := range takes {
				err := tx.QueryRowContext(ctx, `INSERT INTO quotas (key, window_start, used) VALUES (?, ?, ?)
					ON CONFLICT (key, window_start) DO UPDATE SET used = quotas.used + excluded.used
					WHERE quotas.used + excluded.used <= ?
					RETURNING used`, t.Key, t.WindowStart.Unix(), t.N, t.Limit).Scan(&used[i])
				if errors.Is(err, sql.ErrNoRows) {
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
			return false, nil, fmt.Errorf("sqlite: take quota: %w", err)
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
	err := s.read.QueryRowContext(ctx, `SELECT used FROM quotas WHERE key = ? AND window_start = ?`,
		key, windowStart.Unix()).Scan(&used)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: quota used: %w", err)
	}
	return used, nil
}
