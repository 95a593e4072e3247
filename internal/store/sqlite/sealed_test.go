package sqlite

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/storetest"
)

// TestSealed runs the encryption-at-rest suite against real SQLite files.
func TestSealed(t *testing.T) {
	var paths sync.Map // *Store -> file
	open := func(t *testing.T, path string, k *seal.KeyRing) *Store {
		s, err := Open(t.Context(), path, WithKeyRing(k))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		paths.Store(s, path)
		return s
	}
	storetest.RunSealed(t, storetest.SealedHarness{
		Open: func(t *testing.T, k *seal.KeyRing) store.Store {
			return open(t, filepath.Join(t.TempDir(), "gatehouse.db"), k)
		},
		Reopen: func(t *testing.T, s store.Store, k *seal.KeyRing) store.Store {
			p, _ := paths.Load(s)
			return open(t, p.(string), k)
		},
		Raw: func(t *testing.T, s store.Store, table, column string) []string {
			// Table and column come from the suite's fixed lists.
			rows, err := s.(*Store).read.QueryContext(t.Context(), `SELECT `+column+` FROM `+table+` ORDER BY 1`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []string
			for rows.Next() {
				var v string
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				out = append(out, v)
			}
			return out
		},
	})
}
