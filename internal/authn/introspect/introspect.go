// Package introspect authenticates opaque bearer tokens with OAuth 2.0
// Token Introspection (RFC 7662): the gateway asks the authorization
// server whether a token is active, authenticating itself with HTTP Basic
// client credentials, and caches the answer.
//
// Opaque tokens cannot be told apart from one another, so an introspection
// Authenticator owns every Bearer token that reaches it: put it after the
// JWT authenticators in a chain (they pass on what is not theirs).
//
// Failing closed: an active answer is cached until the token's exp (at most
// cache_max_ttl), an inactive one for inactive_ttl. When the endpoint is
// unreachable, answers 5xx or 401, or sends something unreadable, and
// nothing is cached for the token, Authenticate returns a plain error and
// the pipeline answers 503. Errors are never cached and stale answers are
// never served.
package introspect

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/authn/jwt"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Stable failure reasons (authn.Failure.Reason).
const (
	ReasonInactive    = "inactive"
	ReasonExpired     = "expired"
	ReasonNotYetValid = "not_yet_valid"
	ReasonWrongType   = "wrong_token_type"
)

const (
	// DefaultCacheSize bounds the result cache.
	DefaultCacheSize = 10_000
	// maxResponseBytes caps an introspection response: real ones are a
	// few hundred bytes.
	maxResponseBytes     = 64 << 10
	defaultConsumerClaim = "client_id"
)

// Option adjusts an Authenticator.
type Option func(*options)

type options struct {
	client    *http.Client
	now       func() time.Time
	log       *slog.Logger
	cacheSize int
}

// WithHTTPClient replaces the client built from cfg (ca_file, timeout).
// The request still carries cfg.Timeout as its deadline.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithClock replaces time.Now for cache lifetimes and exp checks.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger for endpoint failures.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithCacheSize bounds the result cache (default DefaultCacheSize); 0
// disables it.
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }

// Authenticator introspects Bearer tokens at one endpoint.
type Authenticator struct {
	name         string
	endpoint     string
	clientID     string
	clientSecret string
	timeout      time.Duration
	maxTTL       time.Duration
	inactiveTTL  time.Duration
	consumer     string
	partner      string
	roles        string

	client *http.Client
	now    func() time.Time
	log    *slog.Logger
	cache  *resultCache

	mu       sync.Mutex
	inflight map[[32]byte]*call
}

type call struct {
	done chan struct{}
	res  *result
	err  error
}

// result is one introspection answer: a principal, or a refusal.
type result struct {
	principal *authn.Principal
	failure   *authn.Failure
	until     time.Time
}

// New checks cfg and builds the Authenticator. It does no network I/O.
func New(cfg config.Introspection, opts ...Option) (*Authenticator, error) {
	o := options{now: time.Now, log: slog.Default(), cacheSize: DefaultCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	name := cfg.Name
	if name == "" {
		name = cfg.URL
	}
	var problems []string
	if err := checkEndpoint(cfg.URL); err != nil {
		problems = append(problems, err.Error())
	}
	// RFC 7662 §2.1: the endpoint must not answer anonymous callers, or
	// it becomes a token-scanning oracle; the gateway always authenticates.
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		problems = append(problems, "client_id and client_secret are required (the gateway authenticates to the endpoint)")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("introspection %s: %s", name, strings.Join(problems, "; "))
	}
	a := &Authenticator{
		name:         name,
		endpoint:     cfg.URL,
		clientID:     cfg.ClientID,
		clientSecret: cfg.ClientSecret,
		timeout:      orDefault(cfg.Timeout.D(), config.DefaultIntrospectTO),
		maxTTL:       orDefault(cfg.CacheMaxTTL.D(), config.DefaultIntrospectMaxTTL),
		inactiveTTL:  orDefault(cfg.InactiveTTL.D(), config.DefaultInactiveTTL),
		consumer:     cfg.ConsumerClaim,
		partner:      cfg.PartnerClaim,
		roles:        cfg.RolesClaim,
		client:       o.client,
		now:          o.now,
		log:          o.log,
		cache:        newResultCache(o.cacheSize),
		inflight:     map[[32]byte]*call{},
	}
	if a.consumer == "" {
		a.consumer = defaultConsumerClaim
	}
	if a.client == nil {
		c, err := newHTTPClient(cfg.CAFile, a.timeout)
		if err != nil {
			return nil, fmt.Errorf("introspection %s: %w", name, err)
		}
		a.client = c
	}
	return a, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Name is the endpoint's configured name.
func (a *Authenticator) Name() string { return a.name }

// Scheme is the WWW-Authenticate challenge scheme.
func (a *Authenticator) Scheme() string { return jwt.Scheme }

// Authenticate implements authn.Authenticator.
func (a *Authenticator) Authenticate(r *http.Request) (*authn.Principal, error) {
	// Same extraction rules as the JWT authenticators: header only, a
	// token in the query string is refused.
	token, err := jwt.BearerToken(r)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	if res := a.cache.get(sum, a.now()); res != nil {
		return res.answer()
	}
	res, err := a.introspectOnce(r.Context(), sum, token)
	if err != nil {
		return nil, err
	}
	return res.answer()
}

func (res *result) answer() (*authn.Principal, error) {
	if res.failure != nil {
		return nil, res.failure
	}
	p := *res.principal
	return &p, nil
}

// introspectOnce asks the endpoint about token, or waits for the question
// already in flight for the same token: a burst of requests carrying one
// uncached token makes one call.
func (a *Authenticator) introspectOnce(ctx context.Context, sum [32]byte, token string) (*result, error) {
	a.mu.Lock()
	if c := a.inflight[sum]; c != nil {
		a.mu.Unlock()
		select {
		case <-c.done:
			return c.res, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	a.inflight[sum] = c
	a.mu.Unlock()

	// Others may wait on this call: only the timeout bounds it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.timeout)
	c.res, c.err = a.introspect(cctx, sum, token)
	cancel()
	if c.err != nil {
		a.log.Warn("token introspection failed", "introspection", a.name, "error", c.err.Error())
	} else {
		a.cache.put(sum, c.res)
	}

	a.mu.Lock()
	delete(a.inflight, sum)
	a.mu.Unlock()
	close(c.done)
	return c.res, c.err
}

// introspect performs one RFC 7662 request.
func (a *Authenticator) introspect(ctx context.Context, sum [32]byte, token string) (*result, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: client_id and client_secret are form-urlencoded
	// before they go into the Basic credentials.
	req.SetBasicAuth(url.QueryEscape(a.clientID), url.QueryEscape(a.clientSecret))
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("introspect at %s: %w", a.endpoint, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("introspect at %s: the endpoint refused the gateway's client credentials (status %d): check client_id and client_secret", a.endpoint, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("introspect at %s: status %d", a.endpoint, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("introspect at %s: read: %w", a.endpoint, err)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("introspect at %s: response larger than %d bytes", a.endpoint, maxResponseBytes)
	}
	var claims map[string]any
	if err := json.Unmarshal(body, &claims); err != nil || claims == nil {
		return nil, fmt.Errorf("introspect at %s: response is not a JSON object", a.endpoint)
	}
	active, ok := claims["active"].(bool)
	if !ok {
		return nil, fmt.Errorf("introspect at %s: response has no boolean active member", a.endpoint)
	}
	now := a.now()
	refuse := func(reason string) *result {
		return &result{failure: authn.Fail(jwt.Scheme, reason), until: now.Add(a.inactiveTTL)}
	}
	if !active {
		return refuse(ReasonInactive), nil
	}
	// A refresh token is not an access token, even when the server
	// answers for it despite our token_type_hint.
	if tt, _ := claims["token_type"].(string); strings.EqualFold(tt, "refresh_token") {
		return refuse(ReasonWrongType), nil
	}
	exp, hasExp, ok := numericDate(claims, "exp")
	if !ok {
		return nil, fmt.Errorf("introspect at %s: exp is not a NumericDate", a.endpoint)
	}
	if hasExp && !now.Before(exp) {
		return refuse(ReasonExpired), nil
	}
	nbf, hasNbf, ok := numericDate(claims, "nbf")
	if !ok {
		return nil, fmt.Errorf("introspect at %s: nbf is not a NumericDate", a.endpoint)
	}
	if hasNbf && now.Before(nbf) {
		// Not cached: it becomes valid by itself.
		return &result{failure: authn.Fail(jwt.Scheme, ReasonNotYetValid)}, nil
	}
	p := a.principal(claims, sum)
	if hasExp {
		p.ExpiresAt = exp
	}
	until := now.Add(a.maxTTL)
	if hasExp && exp.Before(until) {
		until = exp
	}
	return &result{principal: p, until: until}, nil
}

// principal maps an active introspection response.
func (a *Authenticator) principal(c map[string]any, sum [32]byte) *authn.Principal {
	str := func(name string) string { s, _ := c[name].(string); return s }
	p := &authn.Principal{
		Kind:     authn.KindIntrospect,
		Consumer: str(a.consumer),
		Issuer:   str("iss"),
		Subject:  str("sub"),
		TokenID:  str("jti"),
		Scopes:   stringList(c["scope"]),
		Claims:   c,
	}
	if a.partner != "" {
		p.Partner = str(a.partner)
	}
	if a.roles != "" {
		p.Roles = stringList(c[a.roles])
	}
	switch {
	case p.TokenID != "":
		p.CredentialID = p.TokenID
	case p.Subject != "":
		p.CredentialID = "sub:" + p.Subject
	default:
		// A truncated hash names the token in audit records without
		// revealing it.
		p.CredentialID = "token:" + hex.EncodeToString(sum[:8])
	}
	return p
}

// stringList reads a space-separated string (RFC 7662 scope) or an array.
func stringList(raw any) []string {
	switch x := raw.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func numericDate(c map[string]any, name string) (t time.Time, present, ok bool) {
	raw, present := c[name]
	if !present {
		return t, false, true
	}
	f, isNum := raw.(float64)
	if !isNum || f < 0 || f > 253402300799 {
		return t, true, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, true
}

func checkEndpoint(raw string) error {
	if raw == "" {
		return errors.New("url is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("url %q is not absolute", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("url %q: introspection must use https (http only for loopback)", raw)
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// newHTTPClient builds the endpoint client: TLS 1.2+, the ca_file bundle
// instead of the system roots when set, and no redirects (a redirect would
// resend the token and our credentials somewhere else).
func newHTTPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
		}
		tlsConf.RootCAs = pool
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       tlsConf,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("introspection endpoint redirected: configure its final URL")
		},
	}, nil
}

// resultCache holds answers by SHA-256 of the token, bounded, evicting the
// oldest insertion first.
type resultCache struct {
	mu      sync.RWMutex
	entries map[[32]byte]*result
	ring    [][32]byte
	next    int
}

func newResultCache(size int) *resultCache {
	if size <= 0 {
		return nil
	}
	return &resultCache{entries: make(map[[32]byte]*result, size), ring: make([][32]byte, 0, size)}
}

func (c *resultCache) get(sum [32]byte, now time.Time) *result {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	r := c.entries[sum]
	c.mu.RUnlock()
	if r == nil || !now.Before(r.until) {
		return nil
	}
	return r
}

func (c *resultCache) put(sum [32]byte, r *result) {
	if c == nil || r.until.IsZero() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sum]; ok {
		c.entries[sum] = r
		return
	}
	if len(c.ring) < cap(c.ring) {
		c.ring = append(c.ring, sum)
	} else {
		delete(c.entries, c.ring[c.next])
		c.ring[c.next] = sum
		c.next = (c.next + 1) % len(c.ring)
	}
	c.entries[sum] = r
}

func (c *resultCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
