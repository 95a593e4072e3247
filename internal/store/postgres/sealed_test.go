package postgres

import (
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/storetest"
)

// TestSealed runs the encryption-at-rest suite against real PostgreSQL,
// each store in its own schema.
func TestSealed(t *testing.T) {
	testDSN(t)
	var schemas sync.Map // *Store -> schema
	storetest.RunSealed(t, storetest.SealedHarness{
		Open: func(t *testing.T, k *seal.KeyRing) store.Store {
			schema := newSchema(t)
			s := openSchema(t, schema, WithKeyRing(k))
			schemas.Store(s, schema)
			return s
		},
		Reopen: func(t *testing.T, s store.Store, k *seal.KeyRing) store.Store {
			schema, _ := schemas.Load(s)
			o := openSchema(t, schema.(string), WithKeyRing(k))
			schemas.Store(o, schema)
			return o
		},
		Raw: func(t *testing.T, s store.Store, table, column string) []string {
			rows, err := s.(*Store).pool.Query(t.Context(), `SELECT `+pgx.Identifier{column}.Sanitize()+
				` FROM `+pgx.Identifier{table}.Sanitize()+` ORDER BY 1`)
			if err != nil {
				t.Fatal(err)
			}
			vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			return vals
		},
	})
}
