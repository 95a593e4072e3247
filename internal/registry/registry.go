package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store"
)

// API is one registered API version with its parsed spec.
type API struct {
	Config config.API
	Spec   *Spec
}

// Registry is the inventory compiled from one config load.
type Registry struct {
	APIs []*API
}

// Records returns the inventory rows, ordered by name then version.
func (r *Registry) Records() []store.APIRecord {
	out := make([]store.APIRecord, 0, len(r.APIs))
	for _, a := range r.APIs {
		c := a.Config
		rec := store.APIRecord{
			Name: c.Name, Version: c.Version,
			OwnerTeam: c.Owner.Team, OwnerContact: c.Owner.Contact,
			Exposure: c.Exposure, Sensitivity: c.Sensitivity, Lifecycle: c.Lifecycle,
			ReviewedOn: c.Reviewed.On, ReviewedBy: c.Reviewed.By,
			Host: c.Route.Host, BasePath: c.Route.BasePath, Upstream: c.Upstream,
		}
		if a.Spec != nil {
			rec.SpecDigest = a.Spec.Digest
			rec.Operations = len(a.Spec.Operations)
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out
}

// Snapshot returns the registry as a store snapshot with a content digest,
// so unchanged reloads do not add history rows.
func (r *Registry) Snapshot() store.RegistrySnapshot {
	recs := r.Records()
	b, _ := json.Marshal(recs) // plain structs of strings and ints: cannot fail
	sum := sha256.Sum256(b)
	return store.RegistrySnapshot{Digest: hex.EncodeToString(sum[:]), APIs: recs}
}
