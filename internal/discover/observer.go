package discover

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxTemplates   = 10000
	DefaultMaxHosts       = 64
	DefaultMergeAfter     = 50
	DefaultSampleAboveRPS = 2000
	DefaultMaxDepth       = 32
	DefaultMaxCallers     = 16
)

// OtherHost collects hosts beyond MaxHosts, and OtherCaller callers beyond
// MaxCallers of one endpoint: the totals stay right, the names are capped.
const (
	OtherHost   = "(other)"
	OtherCaller = "(other)"
)

// Options bound an Observer. Zero fields take the defaults above.
type Options struct {
	// MaxTemplates caps the distinct (host, method, template) endpoints
	// kept; calls to new ones beyond it are counted in Dropped.
	MaxTemplates int
	// MaxHosts caps distinct hosts; the Host header is the caller's to
	// choose, so further hosts are folded into OtherHost.
	MaxHosts int
	// MergeAfter is how many distinct free-text values one position under
	// one prefix may take before they are merged into a {str} parameter.
	MergeAfter int
	// SampleAboveRPS: above this many calls per second the observer
	// records 1 in N calls, weighted by N (negative: never sample).
	SampleAboveRPS int
	// MaxDepth is the most path segments recorded; deeper paths are dropped.
	MaxDepth int
	// MaxCallers caps the consumers recorded per endpoint between flushes.
	MaxCallers int
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MaxTemplates, DefaultMaxTemplates)
	def(&o.MaxHosts, DefaultMaxHosts)
	def(&o.MergeAfter, DefaultMergeAfter)
	def(&o.SampleAboveRPS, DefaultSampleAboveRPS)
	def(&o.MaxDepth, DefaultMaxDepth)
	def(&o.MaxCallers, DefaultMaxCallers)
	return o
}

// Observer aggregates observed calls into endpoint templates. The hot path
// (Observe) takes a read lock and updates atomic counters; the write lock
// is only taken the first time a template, host or caller is seen.
//
// Learned structure (which positions are parameters) lives as long as the
// Observer; counts are handed over and reset by Drain.
type Observer struct {
	enabled atomic.Bool

	mu        sync.RWMutex
	opts      Options
	hosts     map[string]*node
	pins      map[string][][]string // host ("" any host) -> declared templates, split
	nodes     int
	endpoints int

	dropped atomic.Int64 // calls not recorded because a cap was reached

	// Adaptive sampling: the rate of the previous second sets 1-in-N for
	// the current one.
	sampleAbove atomic.Int64
	maxCallers  atomic.Int64
	window      atomic.Int64 // unix second being counted
	inWindow    atomic.Int64
	every       atomic.Int64
	seq         atomic.Uint64
}

// node is one position of a host's path trie. Children and endpoints
// change under Observer.mu; counters are atomic.
type node struct {
	lits   map[string]*node // literal children (only pinned ones once merged)
	free   int              // literal children not pinned
	pinned bool             // a literal the registry declares: never merged away
	param  *node            // the parameter child
	merged bool             // free-text values here became a parameter
	kinds  atomic.Uint32    // on a parameter node: the kinds seen there
	eps    []*endpoint
}

type endpoint struct {
	method string
	count  atomic.Int64
	seen   atomic.Int64    // like count, never reset: tells values seen once
	status [4]atomic.Int64 // 1xx/2xx, 3xx, 4xx, 5xx
	first  atomic.Int64    // unix microseconds; 0 none since the last drain
	last   atomic.Int64

	callerMu sync.Mutex
	callers  atomic.Pointer[[]*caller] // copy-on-write
}

type caller struct {
	consumer, partner string
	count             atomic.Int64
	last              atomic.Int64
}

// NewObserver returns an enabled Observer.
func NewObserver(o Options) *Observer {
	obs := &Observer{hosts: map[string]*node{}, pins: map[string][][]string{}}
	obs.every.Store(1)
	obs.SetOptions(o)
	obs.enabled.Store(true)
	return obs
}

// SetOptions changes the bounds (on config reload). Lowering a cap keeps
// what is already recorded and refuses new entries until Drain frees room.
func (o *Observer) SetOptions(opts Options) {
	opts = opts.withDefaults()
	o.mu.Lock()
	o.opts = opts
	o.mu.Unlock()
	o.sampleAbove.Store(int64(opts.SampleAboveRPS))
	o.maxCallers.Store(int64(opts.MaxCallers))
}

// SetEnabled turns observation on or off without losing what was learned.
func (o *Observer) SetEnabled(on bool) { o.enabled.Store(on) }

// Dropped is the number of calls not recorded because a cap was reached.
func (o *Observer) Dropped() int64 { return o.dropped.Load() }

// Endpoints is the number of endpoint templates held in memory.
func (o *Observer) Endpoints() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.endpoints
}

// SampleEvery is the current sampling: 1 call in N is recorded.
func (o *Observer) SampleEvery() int64 { return max(1, o.every.Load()) }

// methodToken maps a request method to a constant string: methods are the
// client's to invent, and each new one would be a new endpoint.
func methodToken(m string) string {
	switch m {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "PATCH":
		return "PATCH"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	case "OPTIONS":
		return "OPTIONS"
	case "TRACE":
		return "TRACE"
	}
	return "OTHER"
}

const maxHostLen = 255

// Observe records one call. host is the Host header as received, path the
// normalised escaped path, status the response status; consumer and
// partner name the caller when authenticated. It is safe for concurrent
// use and does not allocate for an endpoint seen before.
func (o *Observer) Observe(host, method, path string, status int, consumer, partner string, now time.Time) {
	if !o.enabled.Load() || len(path) == 0 || path[0] != '/' {
		return
	}
	w := o.weight(now)
	if w == 0 {
		return
	}
	var hb [maxHostLen]byte
	h := hostKey(&hb, host)
	m := methodToken(method)
	o.mu.RLock()
	ep, ok := o.lookup(h, m, path)
	depth := o.opts.MaxDepth
	o.mu.RUnlock()
	if !ok {
		if segments(path) > depth {
			o.dropped.Add(w)
			return
		}
		o.mu.Lock()
		ep = o.insert(string(h), m, path)
		o.mu.Unlock()
		if ep == nil {
			o.dropped.Add(w)
			return
		}
	}
	ep.add(o, w, status, consumer, partner, now.UnixMicro())
}

// weight decides whether this call is recorded and with which weight.
func (o *Observer) weight(now time.Time) int64 {
	limit := o.sampleAbove.Load()
	if limit <= 0 {
		return 1
	}
	sec := now.Unix()
	if o.window.Load() != sec {
		if prev := o.window.Swap(sec); prev != sec {
			n := o.inWindow.Swap(0)
			every := int64(1)
			if n > limit {
				every = (n + limit - 1) / limit
			}
			o.every.Store(every)
		}
	}
	o.inWindow.Add(1)
	e := o.every.Load()
	if e <= 1 {
		return 1
	}
	if o.seq.Add(1)%uint64(e) != 0 {
		return 0
	}
	return e
}

// hostKey lower-cases host and strips its port into buf, without allocating.
func hostKey(buf *[maxHostLen]byte, host string) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if len(host) > maxHostLen {
		host = host[:maxHostLen]
	}
	n := copy(buf[:], host)
	for i := 0; i < n; i++ {
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	return buf[:n]
}

func segments(path string) int { return strings.Count(path, "/") }

// lookup walks the trie for an existing endpoint; the read lock is held.
func (o *Observer) lookup(host []byte, method, path string) (*endpoint, bool) {
	n := o.hosts[string(host)]
	if n == nil {
		if n = o.hosts[OtherHost]; n == nil || len(o.hosts) < o.opts.MaxHosts {
			return nil, false
		}
	}
	rest := path[1:]
	for depth := 1; ; depth++ {
		if depth > o.opts.MaxDepth {
			return nil, false
		}
		seg, tail, more := strings.Cut(rest, "/")
		if c := n.lits[seg]; c != nil {
			n = c
		} else {
			k := Classify(seg)
			if k == KindLiteral {
				if !n.merged {
					return nil, false
				}
				k = KindString
			}
			p := n.param
			if p == nil {
				return nil, false
			}
			if b := kindBit(k); p.kinds.Load()&b == 0 {
				p.kinds.Or(b)
			}
			n = p
		}
		if !more {
			break
		}
		rest = tail
	}
	for _, ep := range n.eps {
		if ep.method == method {
			return ep, true
		}
	}
	return nil, false
}

// maxNodesPer is how many trie nodes one endpoint may cost on average.
const maxNodesPer = 4

// insert creates what lookup did not find; the write lock is held. It
// returns nil when a cap refuses the new endpoint.
func (o *Observer) insert(host, method, path string) *endpoint {
	n := o.root(host)
	maxNodes := o.opts.MaxTemplates * maxNodesPer
	rest := path[1:]
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if c := n.lits[seg]; c != nil {
			n = c
		} else if k := Classify(seg); k == KindLiteral && !n.merged {
			if n.free >= o.opts.MergeAfter || n.free >= sparseMin(n) && o.sparse(n) {
				o.merge(n)
				continue // the same segment again, now as a parameter
			}
			if o.nodes >= maxNodes {
				return nil
			}
			c = &node{}
			if n.lits == nil {
				n.lits = map[string]*node{}
			}
			n.lits[strings.Clone(seg)] = c
			n.free++
			o.nodes++
			n = c
		} else {
			if k == KindLiteral {
				k = KindString
			}
			if n.param == nil {
				if o.nodes >= maxNodes {
					return nil
				}
				n.param = &node{}
				o.nodes++
			}
			n = n.param
			n.kinds.Or(kindBit(k))
		}
		if !more {
			break
		}
		rest = tail
	}
	for _, ep := range n.eps {
		if ep.method == method {
			return ep
		}
	}
	if o.endpoints >= o.opts.MaxTemplates {
		return nil
	}
	ep := &endpoint{method: method}
	n.eps = append(n.eps, ep)
	o.endpoints++
	return ep
}

// root returns host's trie, creating it (or folding the host into
// OtherHost when there are too many); the write lock is held.
func (o *Observer) root(host string) *node {
	if n := o.hosts[host]; n != nil {
		return n
	}
	if len(o.hosts) >= o.opts.MaxHosts-1 {
		host = OtherHost
		if n := o.hosts[host]; n != nil {
			return n
		}
	}
	n := &node{}
	o.hosts[host] = n
	o.nodes++
	for _, t := range o.pins[""] {
		o.pin(n, t)
	}
	return n
}

// minSparse is the fewest distinct free-text values at one position before
// their sparseness alone may make it a parameter. Below it, a first round
// of calls to a wide resource (each sub-resource seen once) would look
// sparse too.
const minSparse = 16

// minSparseBesideIDs is minSparse where machine-made identifiers were
// already seen at the position: it is a parameter position, and sparse
// literal siblings are more of its values (logins beside cus_9aB3kLm2).
const minSparseBesideIDs = 4

func sparseMin(n *node) int {
	if n.param != nil && n.param.kinds.Load()&kindBit(KindString) != 0 {
		return minSparseBesideIDs
	}
	return minSparse
}

// sparse reports whether most literal children of n were seen only once:
// resource names repeat, identifiers and names of things mostly do not.
func (o *Observer) sparse(n *node) bool {
	once := 0
	for _, c := range n.lits {
		if !c.pinned && seenAtMostOnce(c, new(int64)) {
			once++
		}
	}
	return once*4 >= n.free*3
}

func seenAtMostOnce(n *node, sum *int64) bool {
	for _, ep := range n.eps {
		if *sum += ep.seen.Load(); *sum > 1 {
			return false
		}
	}
	for _, c := range n.lits {
		if !seenAtMostOnce(c, sum) {
			return false
		}
	}
	return n.param == nil || seenAtMostOnce(n.param, sum)
}

// merge turns n's literal children into its parameter child: the values
// seen there were too many to be names of resources. Pinned literals stay.
func (o *Observer) merge(n *node) {
	if n.param == nil {
		n.param = &node{}
	}
	n.param.kinds.Or(kindBit(KindString))
	lits := n.lits
	n.lits, n.free, n.merged = nil, 0, true
	for seg, c := range lits {
		if c.pinned {
			if n.lits == nil {
				n.lits = map[string]*node{}
			}
			n.lits[seg] = c
			continue
		}
		o.fold(n.param, c)
	}
	o.nodes, o.endpoints = 0, 0
	for _, h := range o.hosts {
		o.count(h)
	}
}

// fold adds src's subtree into dst.
func (o *Observer) fold(dst, src *node) {
	dst.kinds.Or(src.kinds.Load())
	for _, se := range src.eps {
		var de *endpoint
		for _, e := range dst.eps {
			if e.method == se.method {
				de = e
			}
		}
		if de == nil {
			dst.eps = append(dst.eps, se) // moved: late adds to it still count
			continue
		}
		de.absorb(se)
	}
	for seg, c := range src.lits {
		switch d := dst.lits[seg]; {
		case d != nil:
			o.fold(d, c)
		case dst.merged && !c.pinned:
			dst.param.kinds.Or(kindBit(KindString))
			o.fold(dst.param, c)
		default:
			if dst.lits == nil {
				dst.lits = map[string]*node{}
			}
			dst.lits[seg] = c
			if !c.pinned {
				dst.free++
			}
		}
	}
	if src.param != nil {
		if dst.param == nil {
			dst.param = src.param
		} else {
			o.fold(dst.param, src.param)
		}
	}
	if !dst.merged && dst.free > o.opts.MergeAfter {
		o.merge(dst)
	}
}

func (o *Observer) count(n *node) {
	o.nodes++
	o.endpoints += len(n.eps)
	for _, c := range n.lits {
		o.count(c)
	}
	if n.param != nil {
		o.count(n.param)
	}
}

func (e *endpoint) add(o *Observer, w int64, status int, consumer, partner string, now int64) {
	e.count.Add(w)
	e.seen.Add(w)
	i := status/100 - 2
	if i < 0 {
		i = 0
	} else if i > 3 {
		i = 3
	}
	e.status[i].Add(w)
	if e.first.Load() == 0 {
		e.first.CompareAndSwap(0, now)
	}
	if e.last.Load() < now {
		e.last.Store(now) // a racing older time may win: seconds apart at most
	}
	c := e.caller(o, consumer, partner)
	c.count.Add(w)
	if c.last.Load() < now {
		c.last.Store(now)
	}
}

func (e *endpoint) caller(o *Observer, consumer, partner string) *caller {
	if cs := e.callers.Load(); cs != nil {
		for _, c := range *cs {
			if c.consumer == consumer && c.partner == partner {
				return c
			}
		}
	}
	e.callerMu.Lock()
	defer e.callerMu.Unlock()
	var cur []*caller
	if cs := e.callers.Load(); cs != nil {
		cur = *cs
	}
	for _, c := range cur {
		if c.consumer == consumer && c.partner == partner {
			return c
		}
	}
	// Not o.mu: merges hold it while taking callerMu.
	if len(cur) >= int(o.maxCallers.Load()) {
		consumer, partner = OtherCaller, ""
		for _, c := range cur {
			if c.consumer == consumer && c.partner == partner {
				return c
			}
		}
	}
	c := &caller{consumer: strings.Clone(consumer), partner: strings.Clone(partner)}
	next := append(append(make([]*caller, 0, len(cur)+1), cur...), c)
	e.callers.Store(&next)
	return c
}

// absorb moves se's counts into e (when a merge folds two endpoints).
func (e *endpoint) absorb(se *endpoint) {
	e.count.Add(se.count.Swap(0))
	for i := range e.status {
		e.status[i].Add(se.status[i].Swap(0))
	}
	if f := se.first.Swap(0); f != 0 && (e.first.Load() == 0 || f < e.first.Load()) {
		e.first.Store(f)
	}
	if l := se.last.Swap(0); l > e.last.Load() {
		e.last.Store(l)
	}
	e.callerMu.Lock()
	var cur []*caller
	if cs := e.callers.Load(); cs != nil {
		cur = *cs
	}
	next := append([]*caller(nil), cur...)
	if cs := se.callers.Load(); cs != nil {
	outer:
		for _, sc := range *cs {
			for _, c := range next {
				if c.consumer == sc.consumer && c.partner == sc.partner {
					c.count.Add(sc.count.Swap(0))
					if l := sc.last.Load(); l > c.last.Load() {
						c.last.Store(l)
					}
					continue outer
				}
			}
			next = append(next, sc)
		}
	}
	e.callers.Store(&next)
	e.callerMu.Unlock()
}

// Drain returns the counts gathered since the last Drain, one entry per
// endpoint that saw traffic, ordered by host, method, template, and resets
// them. The learned structure stays.
func (o *Observer) Drain() []store.DiscoveredEndpoint {
	return o.snapshot(true)
}

// Peek is Drain without the reset (for tests and live views).
func (o *Observer) Peek() []store.DiscoveredEndpoint {
	return o.snapshot(false)
}

func (o *Observer) snapshot(reset bool) []store.DiscoveredEndpoint {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var out []store.DiscoveredEndpoint
	var segs []string
	var walk func(host string, n *node)
	walk = func(host string, n *node) {
		for _, ep := range n.eps {
			if d, ok := ep.take(reset); ok {
				d.Host = host
				d.Method = ep.method
				d.Template = "/" + strings.Join(segs, "/")
				out = append(out, d)
			}
		}
		for seg, c := range n.lits {
			segs = append(segs, seg)
			walk(host, c)
			segs = segs[:len(segs)-1]
		}
		if p := n.param; p != nil {
			segs = append(segs, kindOfSet(p.kinds.Load()).Token())
			walk(host, p)
			segs = segs[:len(segs)-1]
		}
	}
	for h, root := range o.hosts {
		// The root stands for the empty path before the first '/'.
		for seg, c := range root.lits {
			segs = append(segs[:0], seg)
			walk(h, c)
		}
		if p := root.param; p != nil {
			segs = append(segs[:0], kindOfSet(p.kinds.Load()).Token())
			walk(h, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		if a.Template != b.Template {
			return a.Template < b.Template
		}
		return a.Method < b.Method
	})
	return out
}

func (e *endpoint) take(reset bool) (store.DiscoveredEndpoint, bool) {
	load := func(v *atomic.Int64) int64 {
		if reset {
			return v.Swap(0)
		}
		return v.Load()
	}
	d := store.DiscoveredEndpoint{Count: load(&e.count)}
	if d.Count == 0 {
		return d, false
	}
	d.Status1xx2xx, d.Status3xx, d.Status4xx, d.Status5xx = load(&e.status[0]), load(&e.status[1]), load(&e.status[2]), load(&e.status[3])
	first, last := load(&e.first), load(&e.last)
	if last == 0 {
		last = time.Now().UnixMicro() // a racing first add has not set it yet
	}
	if first == 0 || first > last {
		first = last
	}
	d.FirstSeen, d.LastSeen = time.UnixMicro(first).UTC(), time.UnixMicro(last).UTC()
	if cs := e.callers.Load(); cs != nil {
		for _, c := range *cs {
			n := load(&c.count)
			if n == 0 {
				continue
			}
			d.Callers = append(d.Callers, store.DiscoveredCaller{Consumer: c.consumer, Partner: c.partner, Count: n,
				LastSeen: time.UnixMicro(c.last.Load()).UTC()})
		}
		sort.Slice(d.Callers, func(i, j int) bool {
			if d.Callers[i].Consumer != d.Callers[j].Consumer {
				return d.Callers[i].Consumer < d.Callers[j].Consumer
			}
			return d.Callers[i].Partner < d.Callers[j].Partner
		})
	}
	if reset {
		// Callers are bounded between drains: start the next period empty.
		e.callerMu.Lock()
		e.callers.Store(nil)
		e.callerMu.Unlock()
	}
	return d, true
}

// SetPins marks the literal segments of declared templates (registry
// routes, parameters in braces), by host ("" for every host), so that
// cardinality merging never folds them into a parameter: /users/me stays
// beside /users/{login}. It replaces the previous set for hosts seen later
// (literals pinned before stay pinned). Pins cost trie nodes like observed
// paths do and count against the same cap.
func (o *Observer) SetPins(byHost map[string][]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pins = map[string][][]string{}
	for host, templates := range byHost {
		for _, t := range templates {
			if t == "" || t[0] != '/' || segments(t) > o.opts.MaxDepth {
				continue
			}
			segs := strings.Split(t[1:], "/")
			o.pins[host] = append(o.pins[host], segs)
			if host == "" {
				for _, n := range o.hosts {
					o.pin(n, segs)
				}
			} else {
				o.pin(o.root(host), segs)
			}
		}
	}
}

func (o *Observer) pin(n *node, segs []string) {
	if o.nodes >= o.opts.MaxTemplates*maxNodesPer {
		return
	}
	for _, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			if n.param == nil {
				n.param = &node{}
				o.nodes++
			}
			n = n.param
			continue
		}
		c := n.lits[s]
		if c == nil {
			c = &node{pinned: true}
			if n.lits == nil {
				n.lits = map[string]*node{}
			}
			n.lits[s] = c
			o.nodes++
		} else if !c.pinned {
			c.pinned = true
			n.free--
		}
		n = c
	}
}
