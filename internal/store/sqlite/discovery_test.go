package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/storetest"
)

func TestDiscoveryConformance(t *testing.T) {
	storetest.RunDiscovery(t, func(t *testing.T) store.Store {
		return openTemp(t, filepath.Join(t.TempDir(), "g.db"))
	})
}
