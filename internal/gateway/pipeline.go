// Package gateway is the data plane: it compiles a config into a Runtime and
// runs every request through the pipeline below, top to bottom.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/authz"
	"github.com/gatehouse/gatehouse/internal/detect"
	"github.com/gatehouse/gatehouse/internal/discover"
	"github.com/gatehouse/gatehouse/internal/govern"
	"github.com/gatehouse/gatehouse/internal/h1"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/route"
	"github.com/gatehouse/gatehouse/internal/waf"
)

// Gateway serves the data plane from the current Runtime.
type Gateway struct {
	runtime atomic.Pointer[Runtime]
	metrics *metrics.Metrics
	log     *slog.Logger

	id     *Identity
	limits limitShared
	// deprecations counts who still calls deprecated versions (across reloads).
	deprecations *govern.Tracker
	// detector receives every finished request (nil: detection off);
	// throttle holds the subjects its automatic responses slowed down.
	detector atomic.Pointer[detect.Engine]
	throttle *throttles

	wafs       *waf.Cache // WAF instances shared across APIs and reloads
	wafTesting WAFTesting

	audit *auditHook // nil: no audit trail

	mu         sync.Mutex
	transports map[transportKey]*h1.Transport
	series     map[string]*metrics.OperationSeries

	observer observerRef // traffic discovery; nil pointer: off
	bodies   atomic.Pointer[discover.BodySampler]
}

// New returns a Gateway with no runtime; Swap one in before serving.
func New(m *metrics.Metrics, log *slog.Logger) *Gateway {
	g := &Gateway{
		metrics:    m,
		log:        log,
		transports: map[transportKey]*h1.Transport{},
		series:     map[string]*metrics.OperationSeries{},
		wafs:       waf.NewCache(),
	}
	g.deprecations = govern.NewTracker(m.Registry, log, govern.TrackerOptions{})
	g.throttle = newThrottles()
	g.SetIdentity(IdentityDeps{})
	g.limits.metrics, g.limits.log = m, log
	g.SetLimits(LimitDeps{})
	return g
}

// Swap publishes rt; requests already running keep the Runtime they started
// with. It returns the previous Runtime (nil on first use).
func (g *Gateway) Swap(rt *Runtime) *Runtime {
	old := g.runtime.Swap(rt)
	g.commitIdentity(rt.Config, rt.identity)
	g.deprecations.SetAlertWindow(rt.Config.Governance.SunsetAlert.D())
	g.wafs.Retain(rt.wafConfigs...) // close the instances no API uses any more
	return old
}

// SetDetector hands every finished request to en (nil stops it).
func (g *Gateway) SetDetector(en *detect.Engine) { g.detector.Store(en) }

// Deprecations is the tracker of calls to deprecated API versions.
func (g *Gateway) Deprecations() *govern.Tracker { return g.deprecations }

// Runtime returns the Runtime currently serving.
func (g *Gateway) Runtime() *Runtime { return g.runtime.Load() }

// call is the per-request state the stages share. It is pooled.
type call struct {
	requestID    string
	clientIP     string
	forwardedFor string
	path         string // normalised escaped path
	host, method string // as received, for discovery
	api          string
	operation    string
	status       int
	denyStage    string
	denyReason   string
	upstreamErr  string // failure kind when the upstream could not answer
	params       route.Params
	principal    *authn.Principal
	vals         []string // header values set by the gateway (fresh per request)
	// The WAF's findings, for the log and audit record: matched CRS rule
	// IDs, inbound anomaly score, and "block" or "detect" ("" if clean).
	wafRules  []int
	wafScore  int
	wafAction string
	// audit trail
	req     *http.Request
	start   time.Time
	op      *Operation
	audited bool
	// drift: the request violated its operation's schema and validation
	// runs in report mode (discovery's drift report reads it from the audit trail).
	drift bool
	// driftResponse: the upstream answered with fields its schema does not
	// document and filtering runs in report mode.
	driftResponse bool
}

var callPool = sync.Pool{New: func() any { return new(call) }}

// ServeHTTP runs the pipeline:
//
//	listener → route (lifecycle) → waf (IP lists, incident blocks, CRS) → authn → revoked → authz
//	→ limit (throttles, rate limits, quotas, in-flight cap) → validate → proxy → filter → record
//
// Each stage that says no ends the request with a problem response naming
// its stage and reason. record (in the deferred call) writes the audit
// record and feeds discovery, the anomaly detectors and the metrics.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt := g.runtime.Load()
	c := callPool.Get().(*call)
	*c = call{}
	sw := statusWriterPool.Get().(*statusWriter)
	sw.ResponseWriter, sw.status, sw.wrote, sw.call = w, 0, false, c
	sw.g, sw.bytes, sw.failed = nil, 0, false
	if g.audit != nil {
		sw.g, c.req, c.start = g, r, start
	}
	g.metrics.InFlight.Inc()
	var op *Operation
	defer func() {
		g.metrics.InFlight.Dec()
		if g.log.Enabled(context.Background(), slog.LevelDebug) {
			// The raw URI and headers go to the logger as they came: the
			// server's logger redacts credentials and personal data.
			g.log.Debug("request", "request_id", c.requestID, "method", r.Method, "uri", r.RequestURI, "headers", r.Header)
		}
		g.record(c, op, sw, start)
		sw.ResponseWriter, sw.call = nil, nil
		statusWriterPool.Put(sw)
		callPool.Put(c)
	}()

	// 1. listener: request ID, client IP, size limits, spoofable headers.
	c.requestID = r.Header.Get("X-Request-Id")
	if !validRequestID(c.requestID) {
		c.requestID = newRequestID()
	}
	// One fresh backing array for every header value this request sets.
	c.vals = make([]string, 10)
	c.vals[0] = c.requestID
	w.Header()["X-Request-Id"] = c.vals[0:1:1]
	if rt == nil {
		g.deny(sw, c, ProbUnavailable, "listener", "not_ready", "The gateway is starting.")
		return
	}
	if headerBytes(r) > rt.maxHeader {
		g.deny(sw, c, ProbHeaderTooLarge, "listener", "header_too_large", "Request headers exceed the size this gateway accepts.")
		return
	}
	if r.ContentLength > rt.maxBody {
		g.deny(sw, c, ProbBodyTooLarge, "listener", "body_too_large", "The request body exceeds the size this API accepts.")
		return
	}
	c.clientIP = rt.trusted.clientIPString(r.RemoteAddr, r.Header["X-Forwarded-For"])
	c.forwardedFor = forwardedFor(rt.trusted, r, c.clientIP)
	stripIdentityHeaders(r.Header)
	// From here on these carry the gateway's values, never the client's.
	c.vals[1] = c.clientIP
	r.Header["X-Real-Ip"] = c.vals[1:2:2]
	r.Header["X-Request-Id"] = c.vals[0:1:1]

	// 2. route: normalise once, then match host + method + path template.
	raw, ok := rawPath(r)
	if !ok {
		g.deny(sw, c, ProbBadPath, "route", "bad_path", "The request target is not a path.")
		return
	}
	path, err := route.Normalize(raw, rt.normalize)
	if err != nil {
		g.deny(sw, c, ProbBadPath, "route", "bad_path", err.Error())
		return
	}
	c.path = path
	c.host, c.method = r.Host, r.Method
	if ts := rt.identity.token; ts != nil && (path == oauth.TokenPath || path == oauth.JWKSPath) {
		// Gatehouse's own authorization server, ahead of every API route
		// (compile refuses APIs that would shadow these paths).
		c.api, c.operation = "gatehouse", strings.TrimPrefix(path, "/")
		if path == oauth.TokenPath {
			ts.ServeToken(sw, r)
		} else {
			ts.ServeJWKS(sw, r)
		}
		return
	}
	res := rt.table.Match(r.Host, r.Method, path, &c.params)
	switch res.Status {
	case route.NotFound:
		pt := rt.passthroughFor(r.Host, path) // observe_unregistered APIs; see passthrough.go
		if pt == nil {
			g.deny(sw, c, ProbNotFound, "route", "not_found", "")
			return
		}
		res.Handler = pt
	case route.MethodNotAllowed:
		sw.Header()["Allow"] = []string{res.Allow}
		g.deny(sw, c, ProbMethodNotAllowed, "route", "method_not_allowed", "Allowed methods: "+res.Allow+".")
		return
	}
	op = res.Handler.(*Operation)
	c.op = op
	c.api, c.operation = op.API.Config.Name, op.ID
	up := op.upstream
	if lc := up.lifecycle; lc != nil {
		// A deprecated version says so on every answer; past its sunset
		// it is gone for everyone, authenticated or not.
		lc.announce(sw.Header())
		if lc.gone(start) {
			g.deny(sw, c, ProbGone, "route", "sunset", lc.goneDetail)
			return
		}
	}

	// 3. waf: network allow and deny lists, then the Core Rule Set.
	var clientAddr netip.Addr
	revs := rt.identity.revocations
	if len(rt.ipDeny) > 0 || len(up.ipAllow) > 0 || len(up.ipDeny) > 0 || len(rt.partnerNets) > 0 || revs.Blocking() {
		clientAddr, _ = netip.ParseAddr(c.clientIP)
		if inAny(rt.ipDeny, clientAddr) || inAny(up.ipDeny, clientAddr) {
			g.deny(sw, c, ProbForbidden, "waf", "ip_denied", "Requests from this address are not accepted.")
			return
		}
		if revs.BlockedIP(clientAddr) {
			// Blocked by an incident, cluster-wide (gatehouse incident open --block-ips).
			g.deny(sw, c, ProbForbidden, "waf", "ip_blocked", "Requests from this address are not accepted.")
			return
		}
		if len(up.ipAllow) > 0 && !inAny(up.ipAllow, clientAddr) {
			g.deny(sw, c, ProbForbidden, "waf", "ip_not_allowed", "Requests from this address are not accepted.")
			return
		}
	}
	if op.waf != nil && !g.inspectWAF(sw, r, c, op.waf, rt.maxBody) {
		return
	}

	// 4. authn: the first authenticator that recognises a credential
	// decides; none at all leaves the caller anonymous for authz to judge.
	p, err := op.auth.chain.Authenticate(r)
	var fail *authn.Failure
	switch {
	case err == nil:
	case errors.Is(err, authn.ErrNoCredential):
		if op.auth.sentCredential(r) {
			// A credential in a scheme this API accepts that no
			// authenticator claims (say, a token of an untrusted issuer) is
			// a bad credential, not an anonymous call: answering the same
			// as for any invalid token tells a prober nothing.
			g.unauthorized(sw, c, authn.Fail(op.auth.schemeSent(r), "unclaimed_credential"))
			return
		}
		p = nil
	case errors.As(err, &fail):
		g.unauthorized(sw, c, fail)
		return
	default:
		// An IdP, introspection endpoint or the store is unreachable: fail
		// closed rather than guess.
		g.log.Warn("authentication unavailable", "request_id", c.requestID, "api", c.api, "error", err.Error())
		g.deny(sw, c, ProbUnavailable, "authn", "unavailable", "Authentication is temporarily unavailable.")
		return
	}
	if op.auth.requireMTLS || (p != nil && (op.auth.boundTokens || certBound(p))) {
		if f := op.auth.checkCertificate(r, p); f != nil {
			g.unauthorized(sw, c, f)
			return
		}
	}
	c.principal = p
	if p != nil && p.Partner != "" {
		if nets, ok := rt.partnerNets[p.Partner]; ok && !inAny(nets, clientAddr) {
			// A partner's credential used from outside the partner's
			// networks: stolen, or a partner breaking its contract.
			g.deny(sw, c, ProbForbidden, "authz", "partner_network", "The caller is not allowed to perform this operation.")
			return
		}
	}

	// 5. revoked? Checked on every request, cached or not.
	if p != nil && rt.identity.revocations != nil {
		if revoked, kind := rt.identity.revocations.Revoked(p); revoked {
			g.unauthorized(sw, c, authn.Fail(schemeOf(p), "revoked_"+kind))
			return
		}
	}

	// 6. authz: deny by default.
	var in *authz.Input
	if op.policy.Condition() != "" {
		in = authzInput(r, op, c)
	}
	if d := op.policy.Authorize(p, in); !d.Allow {
		g.forbidden(sw, c, op, p, d)
		return
	}
	if lc := up.lifecycle; lc != nil && p != nil {
		g.deprecations.Observe(govern.Caller{API: c.api, Version: lc.version, Consumer: p.Consumer, Partner: p.Partner}, lc.sunset, start)
	}

	// 7. limit: detector throttles (throttle.go), rate limits and quotas
	// (ratelimit.go), then backend protection.
	if !g.applyThrottle(sw, c, clientAddr) {
		return
	}
	if len(op.limits) > 0 || len(rt.limits.consumer) > 0 || len(rt.limits.partner) > 0 {
		if !g.applyLimits(sw, r, c, op, rt.limits, clientAddr) {
			return
		}
	}
	if up.maxInFlight > 0 {
		if up.inFlight.Add(1) > up.maxInFlight {
			up.inFlight.Add(-1)
			sw.Header().Set("Retry-After", "1")
			g.deny(sw, c, ProbUnavailable, "limit", "backend_busy", "The API is at capacity; retry shortly.")
			return
		}
		defer up.inFlight.Add(-1)
	}

	// 8. validate: the request against the operation's OpenAPI schema.
	if op.validator != nil && !g.validateRequest(sw, r, c, op) {
		return
	}

	// 9. proxy: durable audit fails closed before the upstream acts.
	if g.auditUnavailable() {
		g.deny(sw, c, ProbUnavailable, "audit", "unavailable", "The request could not be recorded and was not served.")
		return
	}
	// The body is bounded while it streams to the upstream.
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(sw, r.Body, rt.maxBody)
	}
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		// net/http drops Content-Length when Transfer-Encoding is also
		// present, so the two framings cannot be told apart here. RFC 9112
		// §6.1 requires closing the connection after such a request, so a
		// front proxy that framed by Content-Length cannot be desynchronised.
		sw.Header().Set("Connection", "close")
	}
	prepareUpstream(r, up, c)
	defer g.countAbort(c, op)
	g.sampleBody(r, c, start)
	if op.reportsResponses {
		// Report-mode filtering flags the call for the audit trail; only
		// these operations pay for the context value.
		r = r.WithContext(context.WithValue(r.Context(), callKey{}, c))
	}
	op.proxy.ServeHTTP(sw, r) // 10. filter response: in its ModifyResponse (hygiene.go)
}

// deny ends the request with a problem and records the stage and reason.
func (g *Gateway) deny(w http.ResponseWriter, c *call, p Problem, stage, reason, detail string) {
	c.denyStage, c.denyReason = stage, reason
	WriteProblem(w, p, detail, c.requestID)
}

func (g *Gateway) record(c *call, op *Operation, sw *statusWriter, start time.Time) {
	status := sw.status
	if c.status != 0 {
		status = c.status
	}
	if status == 0 {
		status = http.StatusOK
	}
	if o := g.observer.Load(); o != nil {
		g.observe(o, c, status, start)
	}
	if en := g.detector.Load(); en != nil {
		en.Observe(detectEvent(c, op, status, sw.bytes, start))
	}
	g.auditAtEnd(c, sw, status)
	if sw.failed {
		status = sw.status
	}
	if c.denyStage != "" {
		g.metrics.Denials.WithLabelValues(c.denyStage, c.denyReason).Inc()
		g.metrics.Requests.WithLabelValues(c.api, c.operation, metrics.StatusClass(status), metrics.DecisionDeny).Inc()
		// Refused credentials and policy denials are security events: the
		// internal reason (never shown to the client) is logged. Routing
		// refusals are noise under a scan and stay at debug.
		lvl := slog.LevelDebug
		if c.denyStage == "authn" || c.denyStage == "authz" || c.wafAction != "" {
			lvl = slog.LevelInfo
		}
		if g.log.Enabled(context.Background(), lvl) {
			consumer := ""
			if c.principal != nil {
				consumer = c.principal.Consumer
			}
			g.log.Log(context.Background(), lvl, "request denied", "request_id", c.requestID, "api", c.api, "operation", c.operation,
				"stage", c.denyStage, "reason", c.denyReason, "status", status, "client_ip", c.clientIP, "consumer", consumer,
				"waf_rules", c.wafRules, "waf_score", c.wafScore)
		}
		return
	}
	if c.wafAction != "" {
		// Detect mode (or a score under the threshold): the request went
		// through, and the match is a security event.
		g.log.Info("waf detected", "request_id", c.requestID, "api", c.api, "operation", c.operation,
			"action", c.wafAction, "waf_rules", c.wafRules, "waf_score", c.wafScore, "status", status, "client_ip", c.clientIP)
	}
	if op == nil {
		return
	}
	if c.upstreamErr != "" {
		g.metrics.Requests.WithLabelValues(c.api, c.operation, metrics.StatusClass(status), metrics.DecisionError).Inc()
	} else {
		op.series.CountAllowed(status)
	}
	op.series.Latency.Observe(time.Since(start).Seconds())
}

// rawPath returns the request target's path exactly as the client sent it.
func rawPath(r *http.Request) (string, bool) {
	uri := r.RequestURI
	if strings.HasPrefix(uri, "/") {
		if i := strings.IndexByte(uri, '?'); i >= 0 {
			uri = uri[:i]
		}
		return uri, true
	}
	if uri == "*" || r.URL == nil || r.Method == http.MethodConnect {
		return "", false
	}
	// absolute-form (RFC 9112 §3.2.2): the URL parser kept the raw path.
	p := r.URL.EscapedPath()
	if p == "" {
		return "", false
	}
	return p, true
}

// headerBytes approximates the wire size of the request head.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + 12
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// identityHeaderPrefixes are headers only the gateway may set: the upstream
// trusts them, so a client-sent copy is an impersonation attempt.
var identityHeaderPrefixes = []string{"X-Gatehouse-", "X-Consumer-", "X-Partner-", "X-Credential-", "X-Authenticated-"}

// spoofableHeaders are dropped from every inbound request. X-Original-URL
// and X-Rewrite-URL make some frameworks route by header instead of path,
// which would bypass the gateway's routing and policy.
var spoofableHeaders = []string{
	"X-Real-Ip", "X-Client-Ip", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Original-Url", "X-Rewrite-Url", "X-Original-Forwarded-For",
	"True-Client-Ip", "Cf-Connecting-Ip", "X-Cluster-Client-Ip", "X-Scope", "X-User-Id", "X-Userinfo",
}

// gatewaySetHeaders are the headers the gateway itself sends upstream.
var gatewaySetHeaders = []string{"X-Request-Id"}

func stripIdentityHeaders(h http.Header) {
	for _, k := range spoofableHeaders {
		delete(h, k)
	}
	for k := range h {
		if isIdentityHeader(k) {
			delete(h, k)
			continue
		}
		if strings.IndexByte(k, '_') >= 0 {
			// CGI-style backends (PHP-FPM, WSGI, Rack) read X_Real_IP and
			// X-Real-IP as the same variable: judge the dashed spelling.
			dashed := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
			if isIdentityHeader(dashed) || slices.Contains(spoofableHeaders, dashed) || slices.Contains(gatewaySetHeaders, dashed) {
				delete(h, k)
			}
		}
	}
}

func isIdentityHeader(k string) bool {
	for _, p := range identityHeaderPrefixes {
		if len(k) >= len(p) && strings.EqualFold(k[:len(p)], p) {
			return true
		}
	}
	return false
}

// forwardedFor is the X-Forwarded-For sent upstream. From a trusted proxy
// the chain it sent is kept and the proxy appended, as every proxy does;
// from anyone else only the peer's own address goes on, so a client cannot
// plant entries the upstream might believe.
func forwardedFor(t TrustedProxies, r *http.Request, clientIP string) string {
	peer := parseRemote(r.RemoteAddr)
	xff := r.Header["X-Forwarded-For"]
	if len(t) == 0 || !peer.IsValid() || !t.contains(peer) || len(xff) == 0 {
		return clientIP
	}
	return strings.Join(xff, ", ") + ", " + peer.String()
}

// statusWriter records the status code for metrics. Unwrap lets
// http.ResponseController reach the real writer (flush, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	bytes  int64 // body bytes written
	call   *call // the request's state, for the proxy's error handler
	// audit trail: g is set when a durable commit may be needed
	g      *Gateway
	failed bool // the audit write failed: a 503 replaced the response
}

var statusWriterPool = sync.Pool{New: func() any { return new(statusWriter) }}

func (s *statusWriter) WriteHeader(code int) {
	if s.failed {
		return
	}
	if !s.wrote && code >= 200 {
		if s.g != nil && s.g.audit.durable && !s.call.audited && !s.commitBeforeHeaders(code) {
			return
		}
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.failed {
		return len(b), nil
	}
	if !s.wrote {
		if s.g != nil && s.g.audit.durable && !s.call.audited && !s.commitBeforeHeaders(http.StatusOK) {
			return len(b), nil
		}
		s.status, s.wrote = http.StatusOK, true
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush keeps streaming responses streaming.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// inAny reports whether a is in one of the prefixes. An invalid address
// (unparseable client IP) is in none, so allow lists refuse it.
func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// countAbort records an upstream that failed after the response started:
// ReverseProxy then aborts the handler with http.ErrAbortHandler, past its
// ErrorHandler. The panic goes on so net/http resets the client stream.
func (g *Gateway) countAbort(c *call, op *Operation) {
	if rec := recover(); rec != nil {
		if rec == http.ErrAbortHandler && c.upstreamErr == "" {
			c.upstreamErr = "reset"
			g.metrics.UpstreamErrors.WithLabelValues(op.API.Config.Name, "reset").Inc()
		}
		panic(rec)
	}
}

// detectEvent is the request as the anomaly detectors see it.
func detectEvent(c *call, op *Operation, status int, bytesOut int64, start time.Time) detect.Event {
	e := detect.Event{Time: start, Status: status, Stage: c.denyStage, Reason: c.denyReason, BytesOut: bytesOut}
	e.ClientIP, _ = netip.ParseAddr(c.clientIP)
	if p := c.principal; p != nil {
		e.Consumer, e.Partner, e.Credential = p.Consumer, p.Partner, p.CredentialID
	}
	if op != nil {
		e.API, e.Version, e.Operation = op.API.Config.Name, op.API.Config.Version, op.ID
		e.Deprecated = op.API.Config.Lifecycle == "deprecated"
		if n := c.params.Len(); n > 0 {
			_, e.ObjectID = c.params.At(n - 1)
		}
	}
	return e
}

// callKey carries the request's call state to the response filter.
type callKey struct{}
