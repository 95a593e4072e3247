package discover

import (
	"bytes"
	"encoding/json"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// Request body sampling: for the learned OpenAPI, a few JSON request
// bodies per endpoint are reduced to a schema (types, properties, array
// items), merged across samples. Values are never kept, only their shape.

// Bounds of body sampling.
const (
	MaxSampleBytes   = 16 << 10 // larger bodies are not sampled
	maxSampledKeys   = 1000     // endpoints with a body schema
	maxShapeProps    = 64       // properties kept per object
	maxShapeDepth    = 6
	maxShapeNodes    = 512              // nodes per endpoint's schema, across all samples
	sampleEvery      = 10 * time.Second // per endpoint
	maxSamplesPerSec = 20               // across all endpoints
)

// BodySampler collects request body shapes per (host, method, template
// shape). It is safe for concurrent use and bounded.
type BodySampler struct {
	nodes map[sampleKey]*int // shape nodes used per endpoint
	// second and tried bound the work per second: every Want past the
	// first maxSamplesPerSec in a second returns at once, without
	// templating the path or taking the lock.
	second atomic.Int64
	tried  atomic.Int32

	mu     sync.Mutex
	shapes map[sampleKey]*jsonShape
	last   map[sampleKey]time.Time
}

type sampleKey struct{ host, method, shape string }

// NewBodySampler returns an empty sampler.
func NewBodySampler() *BodySampler {
	return &BodySampler{shapes: map[sampleKey]*jsonShape{}, last: map[sampleKey]time.Time{}, nodes: map[sampleKey]*int{}}
}

func keyOf(host, method, path string) sampleKey {
	return sampleKey{host: canonicalHost(host), method: methodToken(method), shape: Shape(Templatize(path))}
}

// canonicalHost lower-cases the host and drops a port, as the observer keys hosts.
func canonicalHost(h string) string {
	var buf [maxHostLen]byte
	return string(hostKey(&buf, h))
}

// Want reports whether a body for this request should be sampled now, and
// reserves the sample if so.
func (b *BodySampler) Want(host, method, path string, now time.Time) bool {
	if sec := now.Unix(); b.second.Load() != sec {
		b.second.Store(sec)
		b.tried.Store(0)
	}
	if b.tried.Add(1) > maxSamplesPerSec {
		return false
	}
	k := keyOf(host, method, path)
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.last[k]; ok && now.Sub(t) < sampleEvery {
		return false
	}
	if _, ok := b.shapes[k]; !ok && len(b.shapes) >= maxSampledKeys {
		return false
	}
	b.last[k] = now
	return true
}

// Offer merges one JSON body's shape; anything that is not JSON is ignored.
func (b *BodySampler) Offer(host, method, path string, body []byte) {
	if len(body) == 0 || len(body) > MaxSampleBytes {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return
	}
	k := keyOf(host, method, path)
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.shapes[k]
	if s == nil {
		if len(b.shapes) >= maxSampledKeys {
			return
		}
		s = &jsonShape{}
		b.shapes[k] = s
		n := maxShapeNodes
		b.nodes[k] = &n
	}
	s.add(v, 0, b.nodes[k])
}

// Apply sets the body schema of every entry a sample was taken for.
func (b *BodySampler) Apply(entries []store.DiscoveredEndpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range entries {
		e := &entries[i]
		if s := b.shapes[sampleKey{e.Host, e.Method, Shape(e.Template)}]; s != nil {
			if j, err := json.Marshal(s.schema()); err == nil {
				e.BodySchema = string(j)
			}
		}
	}
}

// jsonShape is the union of the values seen at one place of a document.
type jsonShape struct {
	types map[string]bool
	props map[string]*jsonShape
	items *jsonShape
}

// add merges v; budget bounds the nodes the whole schema may create, so
// many samples cannot grow it without limit.
func (s *jsonShape) add(v any, depth int, budget *int) {
	if s.types == nil {
		s.types = map[string]bool{}
	}
	switch x := v.(type) {
	case nil:
		s.types["null"] = true
	case bool:
		s.types["boolean"] = true
	case string:
		s.types["string"] = true
	case json.Number:
		if _, err := x.Int64(); err == nil {
			s.types["integer"] = true
		} else {
			s.types["number"] = true
		}
	case []any:
		s.types["array"] = true
		if depth >= maxShapeDepth {
			return
		}
		if s.items == nil {
			if *budget <= 0 {
				return
			}
			*budget--
			s.items = &jsonShape{}
		}
		for _, it := range x {
			s.items.add(it, depth+1, budget)
		}
	case map[string]any:
		s.types["object"] = true
		if depth >= maxShapeDepth {
			return
		}
		if s.props == nil {
			s.props = map[string]*jsonShape{}
		}
		for name, it := range x {
			p := s.props[name]
			if p == nil {
				if len(s.props) >= maxShapeProps || *budget <= 0 {
					continue
				}
				*budget--
				p = &jsonShape{}
				s.props[name] = p
			}
			p.add(it, depth+1, budget)
		}
	}
}

// schema renders the shape as JSON Schema (OpenAPI 3.1).
func (s *jsonShape) schema() map[string]any {
	out := map[string]any{}
	var types []string
	for t := range s.types {
		types = append(types, t)
	}
	sort.Strings(types)
	if types = mergeNumber(types); len(types) == 1 {
		out["type"] = types[0]
	} else if len(types) > 1 {
		out["type"] = types
	}
	if s.props != nil {
		props := map[string]any{}
		for name, p := range s.props {
			props[name] = p.schema()
		}
		out["properties"] = props
	}
	if s.items != nil && s.items.types != nil {
		out["items"] = s.items.schema()
	}
	return out
}

// mergeNumber folds integer into number when both were seen.
func mergeNumber(types []string) []string {
	hasNum := false
	for _, t := range types {
		hasNum = hasNum || t == "number"
	}
	if !hasNum {
		return types
	}
	out := types[:0]
	for _, t := range types {
		if t != "integer" {
			out = append(out, t)
		}
	}
	return out
}
