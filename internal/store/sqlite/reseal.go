package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/store"
)

var _ store.SealedStore = (*Store)(nil)

// sealedValue is one sensitive value read for ResealValues.
type sealedValue struct {
	table, column, old, aad, new string
	key                          []any // WHERE arguments naming the row
}

// ResealValues implements store.SealedStore. Rows are read in key order, a
// batch at a time, from the reader pool; the changes of a batch are written
// in one short write transaction with compare-and-swap updates, so the
// gateway's own writes interleave between batches.
func (s *Store) ResealValues(ctx context.Context, batch int, fn store.ResealFunc) (store.ResealStats, error) {
	var st store.ResealStats
	if batch <= 0 {
		batch = 500
	}
	cols := store.CredentialSealedColumns
	after := ""
	for {
		rows, err := s.read.QueryContext(ctx, `SELECT id, created_by, revoked_why, last_used_ip, metadata
			FROM credentials WHERE id > ? ORDER BY id LIMIT ?`, after, batch)
		if err != nil {
			return st, fmt.Errorf("sqlite: reseal credentials: %w", err)
		}
		var vals []sealedValue
		n := 0
		for rows.Next() {
			var id string
			v := make([]string, len(cols))
			if err := rows.Scan(&id, &v[0], &v[1], &v[2], &v[3]); err != nil {
				rows.Close()
				return st, fmt.Errorf("sqlite: reseal credentials: %w", err)
			}
			n++
			after = id
			for i, c := range cols {
				vals = append(vals, sealedValue{table: "credentials", column: c, old: v[i],
					aad: store.CredentialAAD(c, id), key: []any{id}})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return st, fmt.Errorf("sqlite: reseal credentials: %w", err)
		}
		stop, err := s.resealBatch(ctx, vals, fn, &st, `id = ?`)
		if err != nil || stop {
			return st, err
		}
		if n < batch {
			break
		}
	}
	var afterSeq int64
	for {
		rows, err := s.read.QueryContext(ctx, `SELECT seq, kind, subject, reason, created_by
			FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, batch)
		if err != nil {
			return st, fmt.Errorf("sqlite: reseal revocations: %w", err)
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
				return st, fmt.Errorf("sqlite: reseal revocations: %w", err)
			}
			n++
			afterSeq = seq
			vals = append(vals,
				sealedValue{table: "revocations", column: "reason", old: reason,
					aad: store.RevocationAAD("reason", kind, subject), key: []any{seq}},
				sealedValue{table: "revocations", column: "created_by", old: createdBy,
					aad: store.RevocationAAD("created_by", kind, subject), key: []any{seq}})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return st, fmt.Errorf("sqlite: reseal revocations: %w", err)
		}
		stop, err := s.resealBatch(ctx, vals, fn, &st, `seq = ?`)
		if err != nil || stop {
			return st, err
		}
		if n < batch {
			break
		}
	}
	return st, nil
}

// resealBatch runs fn over vals and writes the changed ones. It reports whether fn asked to stop.
func (s *Store) resealBatch(ctx context.Context, vals []sealedValue, fn store.ResealFunc, st *store.ResealStats, where string) (bool, error) {
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
			return false, fmt.Errorf("sqlite: %s.%s %v: %w", v.table, v.column, v.key[0], err)
		}
		if nv != v.old {
			v.new = nv
			changed = append(changed, v)
		}
	}
	if len(changed) == 0 {
		return stop, nil
	}
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		for _, v := range changed {
			// Table and column come from the fixed lists above, never input.
			res, err := tx.ExecContext(ctx, `UPDATE `+v.table+` SET `+v.column+` = ? WHERE `+where+
				` AND `+v.column+` = ?`, v.new, v.key[0], v.old)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				st.Changed++
			} else {
				st.Raced++
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("sqlite: reseal: %w", err)
	}
	return stop, nil
}
