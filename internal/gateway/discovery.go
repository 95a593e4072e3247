package gateway

import (
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/discover"
)

type observerRef = atomic.Pointer[discover.Observer]

// SetObserver attaches traffic discovery (nil detaches it). The observer
// belongs to the Gateway, not to a Runtime, so what it learned survives
// reloads.
func (g *Gateway) SetObserver(o *discover.Observer) { g.observer.Store(o) }

// Observer returns the attached observer, or nil.
func (g *Gateway) Observer() *discover.Observer { return g.observer.Load() }

// observe hands one finished call to discovery: every call that got as
// far as a normalised path, 404s and denials included.
func (g *Gateway) observe(o *discover.Observer, c *call, status int, now time.Time) {
	if c.path == "" || c.api == "gatehouse" {
		return // no path to learn from, or Gatehouse's own token endpoint
	}
	var consumer, partner string
	if p := c.principal; p != nil {
		consumer, partner = p.Consumer, p.Partner
	}
	o.Observe(c.host, c.method, c.path, status, consumer, partner, now)
}

// PinRegistry tells o the literal segments the registry declares, so that
// cardinality merging never folds a declared literal (/users/me) into a
// parameter beside it (/users/{login}).
func PinRegistry(o *discover.Observer, rt *Runtime) {
	if o == nil || rt == nil || rt.Registry == nil {
		return
	}
	cat := discover.NewCatalog(rt.Registry)
	byHost := map[string][]string{}
	for _, op := range cat.Ops {
		byHost[op.Host] = append(byHost[op.Host], op.Template)
	}
	o.SetPins(byHost)
}
