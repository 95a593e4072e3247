package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/internal/store"
)

var _ store.SealedStore = (*Store)(nil)

// sealedValue is one sensitive value read for ResealValues.
type sealedValue struct {
	table, column, old, aad, new string
	key                          any // the row's primary key
}

// ResealValues implements store.SealedStore. Rows are read in key order, a
// batch at a time; the changes of a batch are written in one short
// transaction of compare-and-swap updates, so replicas' own writes
// interleave between batches and are never overwritten.
func (s *Store) ResealValues(ctx context.Context, batch int, fn store.ResealFunc) (store.ResealStats, error) {
	var st store.ResealStats
	if batch <= 0 {
		batch = 500
	}
	cols := store.CredentialSealedColumns
	after := ""
	for {
		rows, err := s.pool.Query(ctx, `SELECT id, created_by, revoked_why, last_used_ip, metadata
			FROM credentials WHERE id > $1 ORDER BY id LIMIT $2`, after, batch)
		if err != nil {
			return st, fmt.Errorf("postgres: reseal credentials: %w", err)
		}
		var vals []sealedValue
		n := 0
		for rows.Next() {
			var id string
			v := make([]string, len(cols))
			if err := rows.Scan(&id, &v[0], &v[1], &v[2], &v[3]); err != nil {
				rows.Close()
				return st, fmt.Errorf("postgres: reseal credentials: %w", err)
			}
			n++
			after = id
			for i, c := range cols {
				vals = append(vals, sealedValue{table: "credentials", column: c, old: v[i],
					aad: store.CredentialAAD(c, id), key: id})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return st, fmt.Errorf("postgres: reseal credentials: %w", err)
		}
		stop, err := s.resealBatch(ctx, vals, fn, &st, "id")
		if err != nil || stop {
			return st, err
		}
		if n < batch {
			break
		}
	}
	var afterSeq int64
	for {
		rows, err := s.pool.Query(ctx, `SELECT seq, kind, subject, reason, created_by
			FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, batch)
		if err != nil {
			return st, fmt.Errorf("postgres: reseal revocations: %w", err)
		}
		var vals []sealedValue
		n := 0
		for rows.Next() {
			var (
				seq                              int64
				kind, subject, reason, createdBy string
			)
			if err := rows.Scan(&seq, &kind, &subject, &reason, &createdBy); err != nil {
				rows.Close()
				return st, fmt.Errorf("postgres: reseal revocations: %w", err)
			}
			n++
			afterSeq = seq
			vals = append(vals,
				sealedValue{table: "revocations", column: "reason", old: reason,
					aad: store.RevocationAAD("reason", kind, subject), key: seq},
				sealedValue{table: "revocations", column: "created_by", old: createdBy,
					aad: store.RevocationAAD("created_by", kind, subject), key: seq})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return st, fmt.Errorf("postgres: reseal revocations: %w", err)
		}
		stop, err := s.resealBatch(ctx, vals, fn, &st, "seq")
		if err != nil || stop {
			return st, err
		}
		if n < batch {
			break
		}
	}
	return st, nil
}

// resealBatch runs fn over vals and writes the changed ones. It reports
// whether fn asked to stop.
func (s *Store) resealBatch(ctx context.Context, vals []sealedValue, fn store.ResealFunc, st *store.ResealStats, keyCol string) (bool, error) {
	var changed []sealedValue
	stop := false
	for _, v := range vals {
		if v.old == "" {
			continue
		}
		st.Visited++
		nv, err := fn(v.old, v.aad)
		if errors.Is(err, store.ErrStopReseal) {
			stop = true
			break
		}
		if err != nil {
			return false, fmt.Errorf("postgres: %s.%s %v: %w", v.table, v.column, v.key, err)
		}
		if nv != v.old {
			v.new = nv
			changed = append(changed, v)
		}
	}
	if len(changed) == 0 {
		return stop, nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, v := range changed {
			// Table and columns come from fixed lists, never from input.
			tag, err := tx.Exec(ctx, `UPDATE `+v.table+` SET `+v.column+` = $1 WHERE `+keyCol+
				` = $2 AND `+v.column+` = $3`, v.new, v.key, v.old)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				st.Changed++
			} else {
				st.Raced++
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("postgres: reseal: %w", err)
	}
	return stop, nil
}
