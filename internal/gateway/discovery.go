package gateway

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/discover"
)

type observerRef = atomic.Pointer[discover.Observer]

// SetObserver attaches traffic discovery (nil detaches it). The observer
// belongs to the Gateway, not to a Runtime, so what it learned survives
// reloads.
func (g *Gateway) SetObserver(o *discover.Observer) { g.observer.Store(o) }

// SetBodySampler attaches request body sampling for discovery (nil detaches).
func (g *Gateway) SetBodySampler(b *discover.BodySampler) { g.bodies.Store(b) }

// sampleBody hands a JSON request body to discovery now and then. The
// body is read (bounded) and put back, so the upstream gets the same bytes.
func (g *Gateway) sampleBody(r *http.Request, c *call, now time.Time) {
	bs := g.bodies.Load()
	if bs == nil || r.ContentLength <= 0 || r.ContentLength > discover.MaxSampleBytes || r.Body == nil ||
		!isJSONType(r.Header.Get("Content-Type")) || !bs.Want(c.host, c.method, c.path, now) {
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, discover.MaxSampleBytes+1))
	rest := r.Body
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), rest), rest}
	if err != nil || int64(len(b)) != r.ContentLength {
		return
	}
	bs.Offer(c.host, c.method, c.path, b)
}

// isJSONType reports whether a Content-Type is JSON (application/json or +json).
func isJSONType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

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
