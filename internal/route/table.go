package route

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ErrInvalidRoute is matched by Compile errors about a single route (bad
// template, method or host).
var ErrInvalidRoute = errors.New("invalid route")

// ErrAmbiguousRoute is matched by Compile errors about routes that would
// match the same requests.
var ErrAmbiguousRoute = errors.New("ambiguous routes")

// MaxParams is the most path parameters one template may have; Params holds
// that many without allocating.
const MaxParams = 8

// Route is one host + method + path template and what it leads to.
type Route struct {
	Host    string // exact host, case-insensitive, no port; "" = default host table
	Method  string // upper-case HTTP method token
	Path    string // base path + OpenAPI path template, e.g. /orders/v1/orders/{orderId}
	Handler any    // opaque to this package: the caller's compiled operation
}

// Status is the outcome of Table.Match.
type Status uint8

const (
	NotFound         Status = iota // no route for this path on this host
	Found                          // Result.Handler and the Params are set
	MethodNotAllowed               // the path exists, the method does not; see Result.Allow
)

func (s Status) String() string {
	switch s {
	case NotFound:
		return "not found"
	case Found:
		return "found"
	case MethodNotAllowed:
		return "method not allowed"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Result is what Table.Match returns. It never points into the request.
type Result struct {
	Status   Status
	Handler  any    // Found: the route's Handler
	Template string // Found: the route's Path template, for audit and metrics
	// Allow is the Allow header value for the matched path: the registered
	// methods, sorted, comma-separated. Set for Found and MethodNotAllowed.
	Allow string
}

// Params receives the path parameters of a match without allocating. Values
// are still percent-encoded exactly as in the normalised path; decode them
// where a decoded value is needed. The zero value is ready to use; Match
// resets it.
type Params struct {
	n      int
	names  [MaxParams]string
	values [MaxParams]string
}

// Len returns the number of parameters.
func (p *Params) Len() int { return p.n }

// At returns the i-th parameter in template order.
func (p *Params) At(i int) (name, value string) { return p.names[i], p.values[i] }

// Get returns the escaped value of the named parameter.
func (p *Params) Get(name string) (string, bool) {
	for i := 0; i < p.n; i++ {
		if p.names[i] == name {
			return p.values[i], true
		}
	}
	return "", false
}

// Table is a compiled, immutable route table, safe for concurrent use.
type Table struct {
	hosts map[string]*node // canonical host -> its own tree
	def   *node            // routes with Host ""
}

type node struct {
	lits  []litEdge        // literal children, in insertion order
	index map[string]*node // the same, when there are many
	param *node            // the {name} child, shared by every param name
	eps   []endpoint       // routes ending here, sorted by method
	allow string
}

type litEdge struct {
	seg      string
	next     *node
	template string // first template that created the edge, for errors
}

type endpoint struct {
	method   string
	template string
	names    []string
	handler  any
	index    int // position in the routes slice, for errors
}

// litIndexMin is where a map lookup starts beating a scan of string compares.
const litIndexMin = 8

func (n *node) child(seg string) *node {
	if n.index != nil {
		return n.index[seg]
	}
	for i := range n.lits {
		if n.lits[i].seg == seg {
			return n.lits[i].next
		}
	}
	return nil
}

func (n *node) endpoint(method string) *endpoint {
	for i := range n.eps {
		if n.eps[i].method == method {
			return &n.eps[i]
		}
	}
	return nil
}

// Match finds the route for a request. path must be the output of Normalize;
// Match does not normalise (it only refuses "." and ".." as parameter values,
// as a guard for callers that forget). params may be nil.
//
// Host: host may carry a port and any letter case (the Host header or
// r.Host as received); the port is dropped (IPv6 literals "[::1]:8443" are
// understood), a trailing dot is dropped and letters are lower-cased. If any
// route was registered for exactly that host, only that host's routes are
// used; otherwise the default routes (Host ""). So a client can always choose
// the default table by naming an unknown host: default routes must carry
// their own policy, never rely on being unreachable.
//
// Path: segments are matched left to right; at each position a literal
// segment takes precedence over a {param} (OpenAPI: concrete paths before
// templated ones), and if the rest of the path then fails to match, the
// parameter branch is tried (backtracking). A parameter matches exactly one
// non-empty segment. The path chosen this way is then looked up by method:
// if it lacks the method the answer is MethodNotAllowed, even if a less
// specific template would have the method. That is stricter than some
// backends, never looser.
//
// Method: exact and case-sensitive. A HEAD request matches the GET route of
// a path that has no HEAD route of its own, and Allow lists HEAD for it.
//
// Confusable segments: when a segment misses every literal at its position
// but would equal one of them for a lenient backend (after percent-decoding
// even reserved characters, dropping a decoded ";..." and ignoring ASCII
// case), Match answers NotFound instead of falling back to a {param}. That
// keeps "/orders/EXPORT" or "/orders/export%3Bx" from being authorised as
// "/orders/{id}" and then served by a backend as "/orders/export".
//
// Match does not allocate.
func (t *Table) Match(host, method, path string, params *Params) Result {
	var local Params
	if params == nil {
		params = &local
	}
	params.n = 0
	if t == nil || len(path) == 0 || path[0] != '/' {
		return Result{}
	}
	root := t.tree(host)
	if root == nil {
		return Result{}
	}
	n, _ := root.match(path[1:], params)
	if n == nil {
		params.n = 0
		return Result{}
	}
	ep := n.endpoint(method)
	if ep == nil {
		params.n = 0
		return Result{Status: MethodNotAllowed, Allow: n.allow}
	}
	copy(params.names[:], ep.names)
	return Result{Status: Found, Handler: ep.handler, Template: ep.template, Allow: n.allow}
}

// match consumes rest (the path after a '/') and returns the terminal node
// reached, or abort when a confusable segment must stop the whole search.
func (n *node) match(rest string, p *Params) (found *node, abort bool) {
	seg, tail, last := rest, "", true
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		seg, tail, last = rest[:i], rest[i+1:], false
	}
	if c := n.child(seg); c != nil {
		if last {
			if len(c.eps) > 0 {
				return c, false
			}
		} else if found, abort = c.match(tail, p); found != nil || abort {
			return found, abort
		}
	} else if n.confusable(seg) {
		return nil, true
	}
	if n.param == nil || seg == "" || isDotSegment(seg) || p.n >= MaxParams {
		return nil, false
	}
	p.values[p.n] = seg
	p.n++
	if last {
		if len(n.param.eps) > 0 {
			return n.param, false
		}
	} else if found, abort = n.param.match(tail, p); found != nil || abort {
		return found, abort
	}
	p.n--
	return nil, false
}

// confusable reports whether seg, which matched no literal child exactly,
// names one of them for a lenient backend.
func (n *node) confusable(seg string) bool {
	if len(n.lits) == 0 || seg == "" {
		return false
	}
	plain := strings.IndexByte(seg, '%') < 0
	for i := range n.lits {
		lit := n.lits[i].seg
		// Without escapes on either side only case can differ, so the
		// lengths must agree: the cheap test that settles most calls.
		if plain && len(lit) != len(seg) && strings.IndexByte(lit, '%') < 0 {
			continue
		}
		if lenientEqual(seg, lit, true) {
			return true
		}
	}
	return false
}

// lenientEqual compares two escaped segments the way the loosest common
// backend would: every escape decoded once, everything from a ';' (raw or
// decoded) on ignored and, if fold, ASCII case folded.
func lenientEqual(a, b string, fold bool) bool {
	i, j := 0, 0
	for {
		ca, ni, oka := lenientNext(a, i, fold)
		cb, nj, okb := lenientNext(b, j, fold)
		if !oka || !okb {
			return oka == okb
		}
		if ca != cb {
			return false
		}
		i, j = ni, nj
	}
}

func lenientNext(s string, i int, fold bool) (c byte, next int, ok bool) {
	if i >= len(s) {
		return 0, i, false
	}
	c, next = s[i], i+1
	if c == '%' && i+2 < len(s) {
		if h, l := unhex(s[i+1]), unhex(s[i+2]); h <= 0xf && l <= 0xf {
			c, next = h<<4|l, i+3
		}
	}
	if c == ';' {
		return 0, i, false
	}
	if fold && 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	}
	return c, next, true
}

// maxHostLen bounds the stack buffer used to lower-case a host: a DNS name
// is at most 253 octets plus a trailing dot, so anything longer names no
// registered host.
const maxHostLen = 255

func (t *Table) tree(host string) *node {
	if len(t.hosts) == 0 {
		return t.def
	}
	h := hostOnly(host)
	if len(h) == 0 || len(h) > maxHostLen {
		return t.def
	}
	var buf [maxHostLen]byte
	n := copy(buf[:], h)
	for i := 0; i < n; i++ {
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	if buf[n-1] == '.' {
		n--
	}
	if tr, ok := t.hosts[string(buf[:n])]; ok { // no allocation: map index of string(bytes)
		return tr
	}
	return t.def
}

// hostOnly strips the port and IPv6 brackets from a Host value.
func hostOnly(host string) string {
	if len(host) > 0 && host[0] == '[' {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		return host[:i]
	}
	return host // no port, or a bare IPv6 address
}

// canonicalHost validates a configured Route.Host and returns the form
// Table.tree compares against.
func canonicalHost(host string) (string, error) {
	if host == "" {
		return "", nil
	}
	h := strings.ToLower(host)
	if h[0] == '[' {
		if h[len(h)-1] != ']' {
			return "", fmt.Errorf("host %q must not include a port", host)
		}
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() {
			return "", fmt.Errorf("host %q is not a valid IPv6 literal", host)
		}
		return h[1 : len(h)-1], nil
	}
	if strings.Contains(h, ":") {
		if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
			return h, nil
		}
		return "", fmt.Errorf("host %q must not include a port", host)
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", fmt.Errorf("host %q is empty", host)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", fmt.Errorf("host %q: only letters, digits, '-', '.', '_' are allowed", host)
		}
	}
	return h, nil
}

// validMethod reports whether m is an RFC 9110 token without lower-case
// letters (methods are case-sensitive; "get" is almost always a typo).
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

type tmplSeg struct {
	text  string // literal text, or the parameter name
	param bool
}

// parseTemplate splits a template into segments and reports every problem
// in it. A template must already be in the form Normalize produces, or some
// requests could never reach it.
func parseTemplate(path string) (segs []tmplSeg, names []string, problems []string) {
	if path == "" {
		return nil, nil, []string{"empty path template"}
	}
	if path[0] != '/' {
		return nil, nil, []string{"path template must start with /"}
	}
	parts := strings.Split(path[1:], "/")
	for i, s := range parts {
		last := i == len(parts)-1
		switch {
		case s == "":
			if !last {
				problems = append(problems, "empty segment (//) is not canonical")
			}
			segs = append(segs, tmplSeg{text: ""})
		case strings.ContainsAny(s, "{}"):
			open, close := strings.Count(s, "{"), strings.Count(s, "}")
			switch {
			case open == 1 && close == 1 && s[0] == '{' && s[len(s)-1] == '}':
				name := s[1 : len(s)-1]
				if name == "" {
					problems = append(problems, "empty parameter name {}")
				} else if slices.Contains(names, name) {
					problems = append(problems, fmt.Sprintf("duplicate parameter name %q", name))
				}
				names = append(names, name)
				segs = append(segs, tmplSeg{text: name, param: true})
			case !balancedBraces(s):
				problems = append(problems, fmt.Sprintf("unbalanced braces in segment %q", s))
			default:
				problems = append(problems, fmt.Sprintf("partial-segment template %q is unsupported: a parameter must be a whole segment, like /{name}", s))
			}
		case isDotSegment(s):
			problems = append(problems, fmt.Sprintf("dot segment %q is not canonical", s))
		default:
			n, err := Normalize("/"+s, NormalizeOptions{})
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("segment %q: %v", s, err))
			case n != "/"+s:
				problems = append(problems, fmt.Sprintf("segment %q is not canonical: requests would arrive as %q", s, n[1:]))
			default:
				segs = append(segs, tmplSeg{text: s})
			}
		}
	}
	if len(names) > MaxParams {
		problems = append(problems, fmt.Sprintf("%d parameters, at most %d are supported", len(names), MaxParams))
	}
	return segs, names, problems
}

// balancedBraces reports whether braces in s pair up without nesting.
func balancedBraces(s string) bool {
	open := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			if open {
				return false
			}
			open = true
		case '}':
			if !open {
				return false
			}
			open = false
		}
	}
	return !open
}

// Compile validates routes and builds the table. Every problem is reported,
// joined with errors.Join, each naming the route's position, method, host and
// template: invalid templates, methods or hosts (ErrInvalidRoute); and two
// routes with the same host, method and template shape ("/a/{x}" and
// "/a/{y}" are one shape), or literal segments that differ only in
// percent-encoding ("items:x" and "items%3Ax"), at the same place
// (ErrAmbiguousRoute).
func Compile(routes []Route) (*Table, error) {
	t := &Table{def: &node{}}
	var errs []error
	for i, r := range routes {
		label := routeLabel(i, r)
		bad := false
		host, err := canonicalHost(r.Host)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %v", ErrInvalidRoute, label, err))
			bad = true
		}
		if !validMethod(r.Method) {
			errs = append(errs, fmt.Errorf("%w: %s: method %q must be an upper-case HTTP method token such as GET", ErrInvalidRoute, label, r.Method))
			bad = true
		}
		segs, names, problems := parseTemplate(r.Path)
		for _, p := range problems {
			errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidRoute, label, p))
		}
		if bad || len(problems) > 0 {
			continue
		}
		root := t.def
		if host != "" {
			if t.hosts == nil {
				t.hosts = make(map[string]*node)
			}
			if root = t.hosts[host]; root == nil {
				root = &node{}
				t.hosts[host] = root
			}
		}
		if err := insert(root, segs, endpoint{
			method:   r.Method,
			template: r.Path,
			names:    names,
			handler:  r.Handler,
			index:    i,
		}, routes); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %v", ErrAmbiguousRoute, label, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	finish(t.def)
	for _, n := range t.hosts {
		finish(n)
	}
	return t, nil
}

func routeLabel(i int, r Route) string {
	host := r.Host
	if host == "" {
		host = "(default host)"
	}
	return fmt.Sprintf("route %d (%s %s %s)", i, r.Method, host, r.Path)
}

func insert(n *node, segs []tmplSeg, ep endpoint, routes []Route) error {
	for _, s := range segs {
		if s.param {
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
			continue
		}
		next := n.child(s.text)
		if next == nil {
			for _, l := range n.lits {
				if lenientEqual(l.seg, s.text, false) {
					return fmt.Errorf("segment %q and segment %q of %s name the same thing once percent-decoded and stripped of ';' parameters", s.text, l.seg, l.template)
				}
			}
			next = &node{}
			n.lits = append(n.lits, litEdge{seg: s.text, next: next, template: ep.template})
		}
		n = next
	}
	if prev := n.endpoint(ep.method); prev != nil {
		return fmt.Errorf("same shape as %s", routeLabel(prev.index, routes[prev.index]))
	}
	n.eps = append(n.eps, ep)
	return nil
}

// finish adds implicit HEAD routes, sorts methods, precomputes Allow and
// indexes wide literal fan-outs, for n and everything below it.
func finish(n *node) {
	if len(n.eps) > 0 {
		if get := n.endpoint("GET"); get != nil && n.endpoint("HEAD") == nil {
			head := *get
			head.method = "HEAD"
			n.eps = append(n.eps, head)
		}
		slices.SortFunc(n.eps, func(a, b endpoint) int { return strings.Compare(a.method, b.method) })
		methods := make([]string, len(n.eps))
		for i := range n.eps {
			methods[i] = n.eps[i].method
		}
		n.allow = strings.Join(methods, ", ")
	}
	if len(n.lits) >= litIndexMin {
		n.index = make(map[string]*node, len(n.lits))
		for _, l := range n.lits {
			n.index[l.seg] = l.next
		}
	}
	for _, l := range n.lits {
		finish(l.next)
	}
	if n.param != nil {
		finish(n.param)
	}
}
