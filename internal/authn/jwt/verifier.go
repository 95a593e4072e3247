// Package jwt verifies JWT access tokens from configured issuers (JWKS by
// URL or OIDC discovery) and maps their claims to an authn.Principal.
//
// A Verifier serves one issuer: it owns that issuer's key cache (background
// refresh, one rate-limited refetch for an unknown kid, keys kept through an
// IdP outage for their cache lifetime) and a bounded cache of verified
// tokens. An Authenticator routes each Bearer token to the Verifier of its
// iss, so one issuer's keys are never tried on another's tokens.
//
// What is refused, and why, is listed on the Reason constants; each refusal
// is an *authn.Failure (401). When verification cannot be done at all (no
// keys could ever be fetched, or they outlived their cache lifetime) the
// error is a plain error and the pipeline answers 503: fail closed.
package jwt

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
)

// DefaultAlgorithms is the allow-list of an issuer that names none: every
// asymmetric algorithm Gatehouse verifies. A key is still only used for the
// algorithm its type and curve (and its alg, if it pins one) allow.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Option adjusts a Verifier.
type Option func(*options)

type options struct {
	client    *http.Client
	now       func() time.Time
	log       *slog.Logger
	cacheSize int
}

// WithHTTPClient replaces the IdP client built from the issuer's ca_file
// (tests, or a client with a corporate proxy).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithClock replaces time.Now for every time decision (claims, caches,
// refetch rate limit, key lifetime).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger for fetch failures and skipped keys.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithTokenCacheSize bounds the verified-token cache (default
// DefaultTokenCacheSize); 0 disables it.
func WithTokenCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }

// Verifier verifies the tokens of one issuer.
type Verifier struct {
	name        string
	issuer      string
	audiences   map[string]bool
	allowed     map[string]bool
	skew        time.Duration
	maxLifetime time.Duration
	required    []string
	consumer    []string // claim names tried in order
	partner     string
	scopes      []string
	roles       string

	keys  *keySource
	cache *tokenCache
	now   func() time.Time
	log   *slog.Logger

	startOnce sync.Once
	closeOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

// New checks cfg and builds its Verifier. It does no network I/O: call
// Start to fetch the keys and keep them fresh, and Close to stop. A
// Verifier that was never started fetches its keys on first use.
func New(cfg config.Issuer, opts ...Option) (*Verifier, error) {
	o := options{now: time.Now, log: slog.Default(), cacheSize: DefaultTokenCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	name := cfg.Name
	if name == "" {
		name = cfg.Issuer
	}
	var problems []string
	if cfg.Issuer == "" {
		problems = append(problems, "issuer (the exact iss of its tokens) is required")
	}
	if (cfg.Discovery == "") == (cfg.JWKSURL == "") {
		problems = append(problems, "set exactly one of discovery and jwks_url")
	}
	for _, u := range []string{cfg.Discovery, cfg.JWKSURL} {
		if u != "" {
			if err := checkFetchURL(u); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	// Without an audience, a token the same IdP minted for any other
	// service would be accepted here.
	if len(cfg.Audiences) == 0 {
		problems = append(problems, "audiences is required (the aud values this gateway accepts)")
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms
	}
	allowed := map[string]bool{}
	for _, a := range algs {
		if methods[a] == nil {
			problems = append(problems, fmt.Sprintf("algorithm %q is not allowed (use asymmetric ones: %s)", a, strings.Join(DefaultAlgorithms, ", ")))
			continue
		}
		allowed[a] = true
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("issuer %s: %s", name, strings.Join(problems, "; "))
	}
	client := o.client
	if client == nil {
		c, err := newHTTPClient(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: %w", name, err)
		}
		client = c
	}
	v := &Verifier{
		name:        name,
		issuer:      cfg.Issuer,
		audiences:   map[string]bool{},
		allowed:     allowed,
		skew:        orDefault(cfg.Skew.D(), config.DefaultSkew),
		maxLifetime: orDefault(cfg.MaxLifetime.D(), config.DefaultMaxLifetime),
		required:    cfg.RequiredClaims,
		consumer:    []string{"azp", "client_id"},
		partner:     cfg.PartnerClaim,
		scopes:      []string{"scope", "scp"},
		roles:       cfg.RolesClaim,
		cache:       newTokenCache(o.cacheSize),
		now:         o.now,
		log:         o.log,
	}
	for _, a := range cfg.Audiences {
		v.audiences[a] = true
	}
	if cfg.ConsumerClaim != "" {
		v.consumer = []string{cfg.ConsumerClaim}
	}
	if cfg.ScopesClaim != "" {
		v.scopes = []string{cfg.ScopesClaim}
	}
	refresh := orDefault(cfg.Refresh.D(), config.DefaultJWKSRefresh)
	v.keys = &keySource{
		name: name, issuer: cfg.Issuer, discoveryURL: cfg.Discovery, jwksURL: cfg.JWKSURL,
		client: client, now: o.now, log: o.log, refresh: refresh, lifetime: keyLifetime(refresh),
	}
	return v, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Name is the issuer's configured name.
func (v *Verifier) Name() string { return v.name }

// Issuer is the exact iss this Verifier accepts.
func (v *Verifier) Issuer() string { return v.issuer }

// Start fetches the keys once (waiting at most the fetch timeout) and then
// refreshes them in the background until ctx ends or Close is called. A
// failed first fetch is logged, not returned: the gateway starts, and this
// issuer's requests fail closed (503) until keys arrive (retried in the
// background every 30 s, and on demand at most every 10 s). Start is
// effective once; later calls do nothing.
func (v *Verifier) Start(ctx context.Context) error {
	v.startOnce.Do(func() {
		err := v.keys.fetch(ctx, false)
		if err != nil {
			v.log.Error("jwt issuer has no keys yet; its tokens fail closed until a fetch succeeds",
				"issuer", v.name, "error", err.Error())
		}
		rctx, cancel := context.WithCancel(ctx)
		v.cancel = cancel
		v.done = make(chan struct{})
		go func() {
			defer close(v.done)
			v.keys.run(rctx, err)
		}()
	})
	return nil
}

// Close stops the background refresh and waits for it. Safe to call more
// than once, and without Start.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		v.startOnce.Do(func() {}) // a later Start must not spawn a goroutine
		if v.cancel != nil {
			v.cancel()
			<-v.done
		}
	})
	return nil
}

// Verify verifies token completely: signature, header rules and claims.
func (v *Verifier) Verify(ctx context.Context, token string) (*authn.Principal, error) {
	sum := tokenSum(token)
	if p := v.cached(sum); p != nil {
		return p, nil
	}
	j, f := parseCompact(token)
	if f != nil {
		return nil, f
	}
	claims, f := decodeClaims(j.payload)
	if f != nil {
		return nil, f
	}
	return v.verify(ctx, j, claims, sum)
}

// tokenSum is the cache key of a token. The bytes are viewed in place,
// not copied: this runs on every request and Sum256 only reads them.
func tokenSum(token string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// cached returns a copy of the cached principal for the token with SHA-256
// sum, if it is cached, within its validity window by the clock, and its
// signing key is still published and trusted.
func (v *Verifier) cached(sum [32]byte) *authn.Principal {
	e := v.cache.get(sum)
	if e == nil {
		return nil
	}
	now := v.now()
	if !now.Before(e.exp.Add(v.skew)) || (!e.nbf.IsZero() && now.Add(v.skew).Before(e.nbf)) {
		return nil
	}
	ks := v.keys.current()
	if ks == nil || !ks.byFP[e.keyFP] {
		return nil
	}
	p := *e.principal
	return &p
}

// verify checks a parsed token whose payload decoded to claims.
func (v *Verifier) verify(ctx context.Context, j *compactJWS, claims map[string]any, sum [32]byte) (*authn.Principal, error) {
	if iss, _ := claims["iss"].(string); iss != v.issuer {
		return nil, fail(ReasonBadIssuer)
	}
	if f := checkHeader(j, v.allowed); f != nil {
		return nil, f
	}
	ks, err := v.keySet(ctx)
	if err != nil {
		return nil, err
	}
	cands, f := ks.candidates(j.kid, j.alg)
	if f != nil && f.Reason == ReasonUnknownKID {
		// Perhaps the IdP rotated keys since the last fetch: look once
		// more (rate-limited, coalesced with concurrent requests).
		if err := v.keys.fetch(ctx, true); err == nil {
			if ks = v.keys.current(); ks != nil {
				cands, f = ks.candidates(j.kid, j.alg)
			}
		}
	}
	if f != nil {
		return nil, f
	}
	key, f := verifySignature(j, cands)
	if f != nil {
		return nil, f
	}
	exp, nbf, f := v.checkClaims(claims)
	if f != nil {
		return nil, f
	}
	p, f := v.principal(claims, exp)
	if f != nil {
		return nil, f
	}
	v.cache.put(sum, &cacheEntry{principal: p, exp: exp, nbf: nbf, keyFP: key.fingerprint})
	out := *p
	return &out, nil
}

// keySet returns the usable key set, fetching on demand when there is none
// (never fetched, or past its lifetime). No keys is an infrastructure
// failure, not the caller's fault: a plain error, so the pipeline fails
// closed with 503.
func (v *Verifier) keySet(ctx context.Context) (*keySet, error) {
	if ks := v.keys.current(); ks != nil {
		return ks, nil
	}
	err := v.keys.fetch(ctx, true)
	if ks := v.keys.current(); ks != nil {
		return ks, nil
	}
	if err == nil {
		err = errors.New("no usable keys")
	}
	return nil, fmt.Errorf("jwt issuer %s: keys unavailable: %w", v.name, err)
}

// checkClaims applies the time, audience, lifetime and required-claim
// rules. iat is required: max_lifetime (exp − iat) is always enforced
// (config defaults it to 24 h), and a token without iat could otherwise
// carry an exp years away and escape the policy.
func (v *Verifier) checkClaims(c map[string]any) (exp, nbf time.Time, f *authn.Failure) {
	now := v.now()
	exp, present, ok := numericDate(c, "exp")
	if !ok {
		return exp, nbf, fail(ReasonMalformed)
	}
	if !present {
		return exp, nbf, fail(ReasonMissingClaim)
	}
	if !now.Before(exp.Add(v.skew)) {
		return exp, nbf, fail(ReasonExpired)
	}
	nbf, present, ok = numericDate(c, "nbf")
	if !ok {
		return exp, nbf, fail(ReasonMalformed)
	}
	if present && now.Add(v.skew).Before(nbf) {
		return exp, nbf, fail(ReasonNotYetValid)
	}
	iat, present, ok := numericDate(c, "iat")
	if !ok {
		return exp, nbf, fail(ReasonMalformed)
	}
	if !present {
		return exp, nbf, fail(ReasonMissingClaim)
	}
	if now.Add(v.skew).Before(iat) {
		return exp, nbf, fail(ReasonNotYetValid)
	}
	if exp.Sub(iat) > v.maxLifetime {
		return exp, nbf, fail(ReasonLifetime)
	}
	auds, ok := stringList(c["aud"], false)
	if !ok {
		return exp, nbf, fail(ReasonMalformed)
	}
	if !slices.ContainsFunc(auds, func(a string) bool { return v.audiences[a] }) {
		return exp, nbf, fail(ReasonBadAudience)
	}
	for _, name := range v.required {
		if _, ok := lookupClaim(c, name); !ok {
			return exp, nbf, fail(ReasonMissingClaim)
		}
	}
	return exp, nbf, nil
}

// principal maps verified claims to the Principal.
func (v *Verifier) principal(c map[string]any, exp time.Time) (*authn.Principal, *authn.Failure) {
	sub, ok1 := optString(c, "sub")
	jti, ok2 := optString(c, "jti")
	if !ok1 || !ok2 {
		return nil, fail(ReasonMalformed)
	}
	p := &authn.Principal{
		Kind:      authn.KindJWT,
		Issuer:    v.issuer,
		Subject:   sub,
		TokenID:   jti,
		Claims:    c, // cnf (x5t#S256) and every other claim, as sent
		ExpiresAt: exp,
	}
	if jti != "" {
		p.CredentialID = jti
	} else {
		p.CredentialID = "sub:" + sub
	}
	for _, name := range v.consumer {
		if s, ok := lookupClaim(c, name); ok {
			if str, ok := s.(string); ok && str != "" {
				p.Consumer = str
				break
			}
		}
	}
	if v.partner != "" {
		if s, ok := lookupClaim(c, v.partner); ok {
			p.Partner, _ = s.(string)
		}
	}
	for _, name := range v.scopes {
		if s, ok := lookupClaim(c, name); ok {
			p.Scopes, _ = stringList(s, true)
			break
		}
	}
	if v.roles != "" {
		if s, ok := lookupClaim(c, v.roles); ok {
			p.Roles, _ = stringList(s, true)
		}
	}
	return p, nil
}

// numericDate reads an RFC 7519 NumericDate. ok is false when the claim is
// present but not a number in a sane range (0 to year 9999).
func numericDate(c map[string]any, name string) (t time.Time, present, ok bool) {
	raw, present := c[name]
	if !present {
		return t, false, true
	}
	f, isNum := raw.(float64)
	if !isNum || f < 0 || f > 253402300799 || math.IsNaN(f) {
		return t, true, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, true
}

// stringList reads a string or an array of strings. With split, a string
// is space-separated (OAuth scope syntax); without, it is one value.
func stringList(raw any, split bool) ([]string, bool) {
	switch x := raw.(type) {
	case string:
		if split {
			return strings.Fields(x), true
		}
		return []string{x}, true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	case nil:
		return nil, true
	}
	return nil, false
}

// lookupClaim finds a claim by its exact name, then, if the name has dots
// and no such claim exists, as a path into nested objects
// ("realm_access.roles"). Exact names come first because URL-style claim
// names ("https://example.com/roles") contain dots.
func lookupClaim(c map[string]any, name string) (any, bool) {
	if v, ok := c[name]; ok {
		return v, true
	}
	if !strings.Contains(name, ".") {
		return nil, false
	}
	var cur any = c
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func optString(c map[string]any, name string) (string, bool) {
	raw, ok := c[name]
	if !ok {
		return "", true
	}
	s, ok := raw.(string)
	return s, ok
}
