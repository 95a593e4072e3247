package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gatehouse/gatehouse/internal/authz"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devcert"
	"github.com/gatehouse/gatehouse/internal/h1"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/registry"
	"github.com/gatehouse/gatehouse/internal/route"
	"github.com/gatehouse/gatehouse/internal/validate"
	"github.com/gatehouse/gatehouse/internal/waf"
)

// Runtime is one compiled configuration: everything a request needs, built
// once at load. It is immutable once published; a reload builds a new one
// and swaps it in atomically, while requests in flight finish on the old.
type Runtime struct {
	Config   *config.Config
	Registry *registry.Registry
	Warnings config.Problems

	table     *route.Table
	normalize route.NormalizeOptions
	trusted   TrustedProxies
	maxHeader int
	maxBody   int64
	cert      *tls.Certificate
	transport *h1.Transport
	identity  *identitySet
	// clientCertTLS is the listener config that requests client
	// certificates, when any partner uses mTLS.
	clientCertTLS *tls.Config
	ipDeny        []netip.Prefix
	// partnerNets are the networks each partner's consumers must call from.
	partnerNets map[string][]netip.Prefix
	// wafConfigs are the WAF policies in use, so a swap can release the rest.
	wafConfigs []waf.Config
	limits     *limitSet
	// passthrough: observe_unregistered APIs; routeHosts: hosts with routes.
	passthrough []*passthroughRoute
	routeHosts  map[string]bool
}

// Operation is one routable operation with what the pipeline needs for it.
type Operation struct {
	API      *registry.API
	ID       string
	Method   string
	Template string // full path template including base path
	series   operationSeries
	upstream *upstream
	auth     *apiAuth
	policy   *authz.OperationPolicy
	waf      *waf.WAF  // nil when the operation is not inspected
	limits   []opLimit // rate limits, all of which must pass
	// policyHeader is the RateLimit-Policy value of limits.
	policyHeader string
	// validator checks requests against the spec (nil: validation off);
	// proxy is the upstream's proxy with this operation's response
	// handling (hygiene.go).
	validator *validate.Request
	proxy     *httputil.ReverseProxy
	// reportsResponses: response filtering runs in report mode here.
	reportsResponses bool
}

// upstream is one API's backend.
type upstream struct {
	api    string
	target *url.URL
	strip  string // base path to remove before forwarding, or ""
	// Network rules and backend protection of the API.
	ipAllow, ipDeny []netip.Prefix
	maxInFlight     int64
	inFlight        atomic.Int64
	prefix          string     // the upstream URL's own path, put before the forwarded path
	lifecycle       *lifecycle // deprecation notice, nil for versions with none
	proxy           *httputil.ReverseProxy
}

// Compile builds a Runtime from a loaded config: parses every OpenAPI spec,
// builds the route table, loads the certificate and prepares the proxies.
// All problems are reported together, with file and line.
func (g *Gateway) Compile(l *config.Loaded) (*Runtime, error) {
	cfg := l.Config
	rep := &config.Reporter{Src: l.Sources, Problems: append(config.Problems(nil), l.Warnings...)}
	rt := &Runtime{
		Config:    cfg,
		Registry:  &registry.Registry{},
		normalize: route.NormalizeOptions{AllowEncodedSlash: cfg.Paths.AllowEncodedSlash},
		maxHeader: cfg.Limits.MaxHeaderBytes,
		maxBody:   cfg.Limits.MaxBodyBytes,
	}
	rt.routeHosts = map[string]bool{}
	for i, s := range cfg.Listen.TrustedProxies {
		p, err := config.ParsePrefix(s)
		if err != nil {
			rep.Errorf(fmt.Sprintf("/listen/trusted_proxies/%d", i), "%v", err)
			continue
		}
		rt.trusted = append(rt.trusted, p)
	}

	cert, err := loadCertificate(cfg.Listen.TLS)
	if err != nil {
		rep.Errorf("/listen/tls", "%v", err)
	}
	rt.cert = cert
	rt.transport = g.transportFor(cfg.Limits)
	rt.identity = g.buildIdentity(cfg, rep)
	if m := rt.identity.mtls; m != nil && m.Enabled() {
		c := g.baseTLS(cfg.Listen.TLS.MinVersion)
		// Requested, not required: APIs without mTLS stay reachable, and
		// the certificate is verified against the right partner's CA only.
		c.ClientAuth = tls.RequestClientCert
		c.ClientCAs = m.Pool
		rt.clientCertTLS = c
	}
	rt.ipDeny = config.ParsePrefixes(cfg.IPDeny)
	rt.limits = g.buildLimits(cfg, rep)
	rt.partnerNets = map[string][]netip.Prefix{}
	for _, p := range cfg.Partners {
		if len(p.Networks) > 0 {
			rt.partnerNets[p.Name] = config.ParsePrefixes(p.Networks)
		}
	}

	var routes []route.Route
	var origins []routeOrigin // origins[i] says where routes[i] was declared
	for i := range cfg.APIs {
		ac := cfg.APIs[i]
		ptr := fmt.Sprintf("/apis/%d", i)
		spec, err := registry.LoadSpec(ac.Spec)
		if err != nil {
			var ses registry.SpecErrors
			if errors.As(err, &ses) {
				for _, se := range ses {
					rep.AtFile(se.File, se.Line, ptr+"/spec", "%s", se.Msg)
				}
			} else {
				rep.Errorf(ptr+"/spec", "%v", err)
			}
			continue
		}
		api := &registry.API{Config: ac, Spec: spec}
		rt.Registry.APIs = append(rt.Registry.APIs, api)
		if ac.Lifecycle == "retired" {
			// A retired API stays in the inventory but has no routes: it is
			// unreachable, not merely discouraged.
			continue
		}
		doc, ok := loadValidationDoc(rep, ac, ptr, spec)
		if !ok {
			continue
		}
		target, _ := url.Parse(ac.Upstream) // validated at load
		up := g.newUpstream(rt, ac, target)
		up.ipAllow, up.ipDeny = config.ParsePrefixes(ac.IPAllow), config.ParsePrefixes(ac.IPDeny)
		up.maxInFlight = int64(ac.MaxInFlight)
		up.lifecycle = newLifecycle(cfg, ac)
		auth := apiAuthFor(ac, rt.identity)
		ids := make([]string, len(spec.Operations))
		opIDs := make(map[string]bool, len(ids))
		for j, o := range spec.Operations {
			ids[j] = o.ID
			opIDs[o.ID] = true
		}
		opLimits := compileLimits(ac, ptr, opIDs, rep)
		policies, probs := authz.Compile(ac, ids, ptr)
		for _, p := range probs {
			if p.Warning {
				rep.Warnf(p.Pointer, "%s", p.Message)
			} else {
				rep.Errorf(p.Pointer, "%s", p.Message)
			}
		}
		wafs := g.buildWAFs(rt, rep, ac, ptr, ids)
		for _, o := range spec.Operations {
			full := joinTemplate(ac.Route.BasePath, o.Path)
			lims := limitsOf(opLimits, o.ID)
			op := &Operation{
				API: api, ID: o.ID, Method: o.Method, Template: full,
				series: g.seriesFor(ac.Name, o.ID), upstream: up,
				auth: auth, policy: policies.For(o.ID), waf: wafs[o.ID],
				limits: lims, policyHeader: policyHeaderOf(lims),
			}
			g.compileHygiene(rep, cfg, ac, ptr, doc, o, op)
			routes = append(routes, route.Route{Host: ac.Route.Host, Method: o.Method, Path: full, Handler: op})
			origins = append(origins, routeOrigin{ptr: ptr + "/spec", file: spec.File, line: o.Line,
				name: fmt.Sprintf("operation %s of API %s %s", o.ID, ac.Name, ac.Version)})
			rt.routeHosts[canonicalRouteHost(ac.Route.Host)] = true
		}
		if ac.ObserveUnregistered {
			if pt := g.compilePassthrough(rep, cfg, ptr, ac, api, up, auth); pt != nil {
				rt.passthrough = append(rt.passthrough, pt)
			}
		}
	}
	if err := rep.Err(); err != nil {
		return nil, err
	}
	table, err := route.Compile(routes)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			reportRouteError(rep, line, origins)
		}
		return nil, rep.Problems
	}
	rt.table = table
	if rt.identity.token != nil {
		var ps route.Params
		for _, p := range []string{oauth.TokenPath, oauth.JWKSPath} {
			for _, m := range []string{http.MethodGet, http.MethodPost} {
				if res := table.Match("", m, p, &ps); res.Status == route.Found {
					op := res.Handler.(*Operation)
					rep.Errorf("/token_endpoint", "API %s operation %s (%s) shadows the token endpoint's %s", op.API.Config.Name, op.ID, op.Template, p)
				}
			}
		}
		if err := rep.Err(); err != nil {
			return nil, err
		}
	}
	rt.Warnings = rep.Problems.Warnings()
	return rt, nil
}

func joinTemplate(base, p string) string {
	if base == "/" || base == "" {
		return p
	}
	return base + p
}

func loadCertificate(t config.TLS) (*tls.Certificate, error) {
	if t.DevCert {
		if err := devcert.Ensure(t.Cert, t.Key); err != nil {
			return nil, fmt.Errorf("generate development certificate: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s: %w", t.Cert, err)
	}
	return &cert, nil
}

type routeOrigin struct {
	ptr, file, name string
	line            int
}

var routeIndex = regexp.MustCompile(`route (\d+)`)

// reportRouteError places a route-table problem at the spec line of the
// first route it names, and names routes by operation and API.
func reportRouteError(rep *config.Reporter, msg string, origins []routeOrigin) {
	var at *routeOrigin
	msg = routeIndex.ReplaceAllStringFunc(msg, func(m string) string {
		i, err := strconv.Atoi(m[len("route "):])
		if err != nil || i < 0 || i >= len(origins) {
			return m
		}
		if at == nil {
			at = &origins[i]
		}
		return origins[i].name
	})
	if at == nil {
		rep.Errorf("/apis", "%s", msg)
		return
	}
	rep.AtFile(at.file, at.line, at.ptr, "%s", msg)
}

// SpecProblems parses the OpenAPI specs a (possibly partial) config names
// and returns their problems, so a config with mistakes of its own still
// gets its specs' mistakes reported in the same run.
func SpecProblems(l *config.Loaded) config.Problems {
	if l == nil || l.Config == nil {
		return nil
	}
	rep := &config.Reporter{Src: l.Sources}
	for i, a := range l.Config.APIs {
		if a.Spec == "" {
			continue
		}
		if _, err := registry.LoadSpec(a.Spec); err != nil {
			var ses registry.SpecErrors
			if errors.As(err, &ses) {
				for _, se := range ses {
					rep.AtFile(se.File, se.Line, fmt.Sprintf("/apis/%d/spec", i), "%s", se.Msg)
				}
			}
		}
	}
	return rep.Problems
}

// LoadAndCompile loads the config at path and compiles it, reporting the
// problems of both steps (and of the specs) together.
func (g *Gateway) LoadAndCompile(path string, env config.LookupEnv) (*Runtime, error) {
	loaded, err := config.Load(path, env)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			return nil, append(ps, SpecProblems(loaded)...)
		}
		return nil, err
	}
	return g.Compile(loaded)
}
