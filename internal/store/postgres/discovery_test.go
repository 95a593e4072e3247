package postgres

import (
	"testing"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/storetest"
)

func TestDiscoveryConformance(t *testing.T) {
	testDSN(t)
	storetest.RunDiscovery(t, func(t *testing.T) store.Store {
		return openSchema(t, newSchema(t))
	})
}
