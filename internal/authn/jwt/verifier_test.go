package jwt

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
)

func TestVerifyAcceptsEachKeyType(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	a := mustAuthenticator(t, startVerifier(t, p, clk, issuerConfig(p)))
	for _, s := range []tokenSpec{
		{alg: "RS256", kid: "rsa-1", key: rsaKey},
		{alg: "PS256", kid: "-", key: rsaKey2}, // no kid: the keys that fit PS256
		{alg: "ES256", kid: "ec-1", key: ecKey},
		{alg: "EdDSA", kid: "ed-1", key: edKey},
	} {
		t.Run(s.alg, func(t *testing.T) {
			pr, err := a.Authenticate(bearerRequest(mint(t, p.url(), clk.Now(), s)))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if pr.Kind != authn.KindJWT || pr.Subject != "user-1" || pr.Issuer != p.url() {
				t.Fatalf("principal = %+v", pr)
			}
		})
	}
}

func TestPrincipalMapping(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	cfg := issuerConfig(p)
	cfg.PartnerClaim = "org"
	cfg.RolesClaim = "realm_access.roles"
	a := mustAuthenticator(t, startVerifier(t, p, clk, cfg))
	cnf := map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
	tok := mint(t, p.url(), clk.Now(), tokenSpec{claims: map[string]any{
		"org": "acme", "realm_access": map[string]any{"roles": []string{"reader", "auditor"}},
		"cnf": cnf, "customers": []string{"c1", "c2"}, "jti": "tok-42",
	}})
	pr, err := a.Authenticate(bearerRequest(tok))
	if err != nil {
		t.Fatal(err)
	}
	exp := clk.Now().Add(10 * time.Minute).Truncate(time.Second)
	if pr.Consumer != "acme-billing" || pr.Partner != "acme" || pr.TokenID != "tok-42" ||
		pr.CredentialID != "tok-42" || !pr.ExpiresAt.Equal(exp) {
		t.Fatalf("principal = %+v", pr)
	}
	if !slices.Equal(pr.Scopes, []string{"orders:read", "orders:write"}) || !slices.Equal(pr.Roles, []string{"reader", "auditor"}) {
		t.Fatalf("scopes %v roles %v", pr.Scopes, pr.Roles)
	}
	got, _ := pr.Claims["cnf"].(map[string]any)
	if got["x5t#S256"] != cnf["x5t#S256"] {
		t.Fatalf("cnf = %v", pr.Claims["cnf"])
	}

	// Fallbacks: client_id for the consumer, scp (array) for scopes,
	// sub:<sub> as credential ID when there is no jti.
	tok = mint(t, p.url(), clk.Now(), tokenSpec{
		claims: map[string]any{"client_id": "svc-a", "scp": []string{"a", "b"}},
		drop:   []string{"azp", "scope", "jti"},
	})
	pr, err = a.Authenticate(bearerRequest(tok))
	if err != nil {
		t.Fatal(err)
	}
	if pr.Consumer != "svc-a" || !slices.Equal(pr.Scopes, []string{"a", "b"}) || pr.CredentialID != "sub:user-1" || pr.TokenID != "" {
		t.Fatalf("principal = %+v", pr)
	}

	// Configured claims replace the defaults; roles as a space string.
	cfg2 := issuerConfig(p)
	cfg2.Name = "other"
	cfg2.ConsumerClaim = "app"
	cfg2.ScopesClaim = "perms"
	cfg2.RolesClaim = "groups"
	v2 := startVerifier(t, p, clk, cfg2)
	tok = mint(t, p.url(), clk.Now(), tokenSpec{claims: map[string]any{"app": "billing", "perms": "x y", "groups": "admin ops"}})
	pr, err = v2.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Consumer != "billing" || !slices.Equal(pr.Scopes, []string{"x", "y"}) || !slices.Equal(pr.Roles, []string{"admin", "ops"}) {
		t.Fatalf("principal = %+v", pr)
	}
}

func TestClaimRules(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	cfg := issuerConfig(p)
	cfg.MaxLifetime = config.Duration(time.Hour)
	cfg.RequiredClaims = []string{"azp", "tenant.id"}
	cfg.Audiences = []string{testAudience, "billing-api"}
	v := startVerifier(t, p, clk, cfg, WithTokenCacheSize(0))
	now := clk.Now()
	base := map[string]any{"tenant": map[string]any{"id": "t1"}}
	with := func(kv ...any) map[string]any {
		m := map[string]any{"tenant": base["tenant"]}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		drop   []string
		want   string
	}{
		{"valid", with(), nil, ""},
		{"aud array intersects", with("aud", []string{"x", "billing-api"}), nil, ""},
		{"aud wrong", with("aud", "payments-api"), nil, ReasonBadAudience},
		{"aud array disjoint", with("aud", []string{"x", "y"}), nil, ReasonBadAudience},
		{"aud missing", with(), []string{"aud"}, ReasonBadAudience},
		{"aud not strings", with("aud", []any{1, 2}), nil, ReasonMalformed},
		{"expired", with("exp", now.Add(-2*time.Minute).Unix()), nil, ReasonExpired},
		{"expired within skew", with("exp", now.Add(-30*time.Second).Unix()), nil, ""},
		{"exp missing", with(), []string{"exp"}, ReasonMissingClaim},
		{"exp a string", with("exp", "tomorrow"), nil, ReasonMalformed},
		{"exp absurd", with("exp", 1e300), nil, ReasonMalformed},
		{"nbf future", with("nbf", now.Add(5*time.Minute).Unix()), nil, ReasonNotYetValid},
		{"nbf within skew", with("nbf", now.Add(30*time.Second).Unix()), nil, ""},
		{"iat future", with("iat", now.Add(5*time.Minute).Unix()), nil, ReasonNotYetValid},
		{"iat missing", with(), []string{"iat"}, ReasonMissingClaim},
		{"lifetime over policy", with("iat", now.Add(-time.Minute).Unix(), "exp", now.Add(2*time.Hour).Unix()), nil, ReasonLifetime},
		{"lifetime at policy", with("iat", now.Add(-time.Minute).Unix(), "exp", now.Add(59*time.Minute).Unix()), nil, ""},
		{"required claim missing", with(), []string{"azp"}, ReasonMissingClaim},
		{"required nested claim missing", map[string]any{}, nil, ReasonMissingClaim},
		{"iss wrong", with("iss", "https://evil.example"), nil, ReasonBadIssuer},
		{"iss missing", with(), []string{"iss"}, ReasonBadIssuer},
		{"iss differs in trailing slash", with("iss", p.url()+"/"), nil, ReasonBadIssuer},
		{"sub not a string", with("sub", 42), nil, ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := mint(t, p.url(), now, tokenSpec{claims: tc.claims, drop: tc.drop})
			_, err := v.Verify(context.Background(), tok)
			if got := reasonOf(err); got != tc.want {
				t.Fatalf("reason = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBearerExtraction(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	a := mustAuthenticator(t, startVerifier(t, p, clk, issuerConfig(p)))
	good := mint(t, p.url(), clk.Now(), tokenSpec{})
	foreign := mint(t, "https://other-idp.example", clk.Now(), tokenSpec{})
	req := func(mut func(r *http.Request)) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://api.example.com/x", nil)
		mut(r)
		return r
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		want string
	}{
		{"bearer", bearerRequest(good), ""},
		{"lower-case scheme", req(func(r *http.Request) { r.Header.Set("Authorization", "bearer "+good) }), ""},
		{"upper-case scheme", req(func(r *http.Request) { r.Header.Set("Authorization", "BEARER "+good) }), ""},
		{"no header", req(func(*http.Request) {}), "no_credential"},
		{"basic", req(func(r *http.Request) { r.SetBasicAuth("u", "p") }), "no_credential"},
		{"apikey scheme", req(func(r *http.Request) { r.Header.Set("Authorization", "ApiKey gh_abc") }), "no_credential"},
		{"opaque token", bearerRequest("2YotnFZFEjr1zCsicMWpAA"), "no_credential"},
		{"four segments", bearerRequest(good + ".x"), "no_credential"},
		{"JWE-like", bearerRequest("a.b.c.d.e"), "no_credential"},
		{"other issuer", bearerRequest(foreign), "no_credential"},
		{"payload not JSON", bearerRequest("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"), "no_credential"},
		{"empty bearer", req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }), ReasonMalformed},
		{"two headers", req(func(r *http.Request) {
			r.Header.Add("Authorization", "Bearer "+good)
			r.Header.Add("Authorization", "Bearer "+good)
		}), ReasonMalformed},
		{"token in query", httptest.NewRequest(http.MethodGet, "https://api.example.com/x?access_token="+good, nil), ReasonTokenInQuery},
		{"token in query besides header", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "https://api.example.com/x?a=1&access_token=x", nil)
			r.Header.Set("Authorization", "Bearer "+good)
			return r
		}(), ReasonTokenInQuery},
		{"access_token as a value is fine", httptest.NewRequest(http.MethodGet, "https://api.example.com/x?q=access_token", nil), "no_credential"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Authenticate(tc.r)
			if got := reasonOf(err); got != tc.want {
				t.Fatalf("reason = %q, want %q", got, tc.want)
			}
		})
	}
	_, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/x?access_token=abc", nil))
	var f *authn.Failure
	if !errors.As(err, &f) || f.Code != "invalid_request" || f.Scheme != "Bearer" || f.Detail == "" {
		t.Fatalf("query token: %#v", err)
	}
}

// An Authenticator over two issuers never tries one issuer's keys on the
// other's tokens.
func TestAuthenticatorRoutesByIssuer(t *testing.T) {
	testKeys(t)
	clk := newClock()
	p1 := newIdP(t, publicJWK(&rsaKey.PublicKey, "k", "RS256"))
	p2 := newIdP(t, publicJWK(&rsaKey2.PublicKey, "k", "RS256"))
	cfg2 := issuerConfig(p2)
	cfg2.Name = "partner-idp"
	v1, v2 := startVerifier(t, p1, clk, issuerConfig(p1)), startVerifier(t, p2, clk, cfg2)
	a := mustAuthenticator(t, v1, v2)
	for _, tc := range []struct {
		name, iss string
		key       any
		want      string
	}{
		{"idp1 own key", p1.url(), rsaKey, ""},
		{"idp2 own key", p2.url(), rsaKey2, ""},
		// Same kid, other issuer's key: only the named issuer's key is tried.
		{"idp1 iss, idp2 key", p1.url(), rsaKey2, ReasonBadSignature},
		{"idp2 iss, idp1 key", p2.url(), rsaKey, ReasonBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := a.Authenticate(bearerRequest(mint(t, tc.iss, clk.Now(), tokenSpec{kid: "k", key: tc.key})))
			if got := reasonOf(err); got != tc.want {
				t.Fatalf("reason = %q, want %q", got, tc.want)
			}
			if err == nil && pr.Issuer != tc.iss {
				t.Fatalf("issuer = %s", pr.Issuer)
			}
		})
	}
	if _, err := NewAuthenticator(v1, v1); err == nil {
		t.Fatal("duplicate issuer accepted")
	}
}

func TestNewRefusesUnsafeConfig(t *testing.T) {
	p := standardIdP(t)
	for _, tc := range []struct {
		name string
		mut  func(*config.Issuer)
		want string
	}{
		{"HS256 allowed", func(c *config.Issuer) { c.Algorithms = []string{"RS256", "HS256"} }, `"HS256" is not allowed`},
		{"none allowed", func(c *config.Issuer) { c.Algorithms = []string{"none"} }, `"none" is not allowed`},
		{"no audience", func(c *config.Issuer) { c.Audiences = nil }, "audiences is required"},
		{"plain http", func(c *config.Issuer) { c.JWKSURL = "http://idp.example.com/jwks" }, "https"},
		{"both sources", func(c *config.Issuer) { c.Discovery = p.url() + "/.well-known/openid-configuration" }, "exactly one"},
		{"no issuer", func(c *config.Issuer) { c.Issuer = "" }, "issuer"},
		{"bad ca file", func(c *config.Issuer) { c.CAFile = "/nonexistent/ca.pem" }, "ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := issuerConfig(p)
			tc.mut(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	cfg := issuerConfig(p)
	cfg.JWKSURL = "http://127.0.0.1:1/jwks"
	if _, err := New(cfg); err != nil {
		t.Fatalf("loopback http refused: %v", err)
	}
}

func TestDiscovery(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	cfg := issuerConfig(p)
	cfg.JWKSURL = ""
	cfg.Discovery = p.url() + "/.well-known/openid-configuration"
	v := startVerifier(t, p, clk, cfg)
	if _, err := v.Verify(context.Background(), mint(t, p.url(), clk.Now(), tokenSpec{})); err != nil {
		t.Fatal(err)
	}
	if p.discovered.Load() != 1 || p.jwksHits.Load() != 1 {
		t.Fatalf("discovery %d, jwks %d fetches", p.discovered.Load(), p.jwksHits.Load())
	}

	for _, tc := range []struct {
		name, issuer, jwksURI, want string
	}{
		{"issuer mismatch", "https://impostor.example", "", "is not the configured"},
		{"jwks_uri over http", "", "http://idp.example.com/jwks.json", "https"},
		{"jwks_uri relative", "", "/jwks.json", "absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := standardIdP(t)
			q.issuer, q.jwksURI = tc.issuer, tc.jwksURI
			cfg := issuerConfig(q)
			cfg.JWKSURL = ""
			cfg.Discovery = q.url() + "/.well-known/openid-configuration"
			v := startVerifier(t, q, clk, cfg)
			_, err := v.Verify(context.Background(), mint(t, q.url(), clk.Now(), tokenSpec{}))
			var f *authn.Failure
			if err == nil || errors.As(err, &f) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a plain error with %q", err, tc.want)
			}
			if q.jwksHits.Load() != 0 {
				t.Fatal("keys fetched despite a bad discovery document")
			}
		})
	}
}

// The issuer's ca_file is the trust anchor when no client is injected; the
// system roots do not know the test IdP, so without it fetches fail.
func TestCAFile(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	cfg := issuerConfig(p)
	cfg.CAFile = p.writeCA(t)
	v, err := New(cfg, WithClock(clk.Now), WithLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Verify(context.Background(), mint(t, p.url(), clk.Now(), tokenSpec{})); err != nil {
		t.Fatalf("with ca_file: %v", err)
	}

	cfg.CAFile = ""
	v2, err := New(cfg, WithClock(clk.Now), WithLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	_, err = v2.Verify(context.Background(), mint(t, p.url(), clk.Now(), tokenSpec{}))
	var f *authn.Failure
	if err == nil || errors.As(err, &f) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without ca_file: %v", err)
	}
}

// The IdP client refuses TLS below 1.2.
func TestOldTLSRefused(t *testing.T) {
	p := standardIdP(t)
	old := httptest.NewUnstartedServer(p.srv.Config.Handler)
	old.TLS = &tls.Config{MaxVersion: tls.VersionTLS11}
	old.Config.ErrorLog = log.New(io.Discard, "", 0)
	old.StartTLS()
	defer old.Close()
	certPath := filepath.Join(t.TempDir(), "old.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := issuerConfig(p)
	cfg.JWKSURL = old.URL + "/jwks.json"
	cfg.CAFile = certPath
	clk := newClock()
	v, err := New(cfg, WithClock(clk.Now), WithLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), mint(t, p.url(), clk.Now(), tokenSpec{}))
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("err = %v, want a TLS version failure", err)
	}
}

func TestJWKSSizeCap(t *testing.T) {
	p := standardIdP(t)
	p.body = []byte(`{"keys":[],"pad":"` + strings.Repeat("x", maxDocBytes) + `"}`)
	clk := newClock()
	v := startVerifier(t, p, clk, issuerConfig(p))
	_, err := v.Verify(context.Background(), mint(t, p.url(), clk.Now(), tokenSpec{}))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

// Keys that cannot safely verify signatures are skipped; the rest work.
func TestJWKSKeyFiltering(t *testing.T) {
	testKeys(t)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	enc := publicJWK(&rsaKey2.PublicKey, "enc", "")
	enc["use"] = "enc"
	ops := publicJWK(&rsaKey2.PublicKey, "ops", "")
	ops["key_ops"] = []string{"encrypt"}
	offCurve := publicJWK(&ecKey.PublicKey, "off", "ES256")
	offCurve["y"] = offCurve["x"]
	p := newIdP(t,
		map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
		publicJWK(&weak.PublicKey, "weak", "RS256"),
		enc, ops, offCurve,
		publicJWK(&rsaKey.PublicKey, "rsa-1", "RS256"),
	)
	clk := newClock()
	v := startVerifier(t, p, clk, issuerConfig(p))
	if _, err := v.Verify(context.Background(), mint(t, p.url(), clk.Now(), tokenSpec{})); err != nil {
		t.Fatal(err)
	}
	ks := v.keys.current()
	if len(ks.keys) != 1 {
		t.Fatalf("%d keys kept, want 1", len(ks.keys))
	}
	for _, kid := range []string{"weak", "enc", "ops"} {
		_, err := v.Verify(context.Background(), mint(t, p.url(), clk.Now(), tokenSpec{kid: kid, key: rsaKey2}))
		if reasonOf(err) != ReasonUnknownKID {
			t.Fatalf("kid %s: %v", kid, err)
		}
	}
}

// A failed first fetch does not stop startup; requests fail closed with a
// plain error (503) until the IdP answers, then work.
func TestInitialFetchFailureFailsClosed(t *testing.T) {
	p := standardIdP(t)
	p.setStatus(http.StatusInternalServerError)
	clk := newClock()
	var logs bytes.Buffer
	a := mustAuthenticator(t, startVerifier(t, p, clk, issuerConfig(p), WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))))
	if !strings.Contains(logs.String(), "no keys yet") || !strings.Contains(logs.String(), "status 500") {
		t.Fatalf("startup failure not logged: %s", logs.String())
	}
	tok := mint(t, p.url(), clk.Now(), tokenSpec{})
	_, err := a.Authenticate(bearerRequest(tok))
	var f *authn.Failure
	if err == nil || errors.As(err, &f) || errors.Is(err, authn.ErrNoCredential) {
		t.Fatalf("err = %v, want a plain error", err)
	}
	p.setStatus(0)
	// The on-demand fetch is rate-limited: still failing within 10 s...
	if _, err := a.Authenticate(bearerRequest(tok)); err == nil {
		t.Fatal("accepted within the refetch interval")
	}
	clk.Advance(11 * time.Second)
	if _, err := a.Authenticate(bearerRequest(tok)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// 100 concurrent requests with an unknown kid cause at most one JWKS fetch,
// and all are refused.
func TestUnknownKIDNoRefetchStorm(t *testing.T) {
	p := standardIdP(t)
	p.delay = 50 * time.Millisecond // keep the fetch in flight while others arrive
	clk := newClock()
	a := mustAuthenticator(t, startVerifier(t, p, clk, issuerConfig(p)))
	before := p.jwksHits.Load()
	var wg sync.WaitGroup
	reasons := make(chan string, 100)
	start := make(chan struct{})
	for i := range 100 {
		tok := mint(t, p.url(), clk.Now(), tokenSpec{kid: "unknown-" + string(rune('a'+i%26))})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := a.Authenticate(bearerRequest(tok))
			reasons <- reasonOf(err)
		}()
	}
	close(start)
	wg.Wait()
	close(reasons)
	for r := range reasons {
		if r != ReasonUnknownKID {
			t.Fatalf("reason = %q", r)
		}
	}
	if n := p.jwksHits.Load() - before; n > 1 {
		t.Fatalf("%d JWKS fetches for 100 unknown-kid requests, want ≤ 1", n)
	}
	// Another burst within the interval fetches nothing.
	before = p.jwksHits.Load()
	for range 20 {
		_, _ = a.Authenticate(bearerRequest(mint(t, p.url(), clk.Now(), tokenSpec{kid: "nope"})))
	}
	if n := p.jwksHits.Load() - before; n != 0 {
		t.Fatalf("%d fetches within the refetch interval", n)
	}
}

// A key published after start is accepted as soon as it is seen (one
// on-demand fetch); a key withdrawn from the JWKS stops working, even for
// tokens in the verified-token cache.
func TestKeyRotation(t *testing.T) {
	testKeys(t)
	p := newIdP(t, publicJWK(&rsaKey.PublicKey, "2026-01", "RS256"))
	clk := newClock()
	a := mustAuthenticator(t, startVerifier(t, p, clk, issuerConfig(p)))
	old := mint(t, p.url(), clk.Now(), tokenSpec{kid: "2026-01", key: rsaKey})
	if _, err := a.Authenticate(bearerRequest(old)); err != nil {
		t.Fatal(err)
	}
	p.setKeys(publicJWK(&rsaKey.PublicKey, "2026-01", "RS256"), publicJWK(&rsaKey2.PublicKey, "2026-02", "RS256"))
	fresh := mint(t, p.url(), clk.Now(), tokenSpec{kid: "2026-02", key: rsaKey2})
	if _, err := a.Authenticate(bearerRequest(fresh)); err != nil {
		t.Fatalf("freshly rotated key refused: %v", err)
	}
	if p.jwksHits.Load() != 2 {
		t.Fatalf("%d fetches, want 2", p.jwksHits.Load())
	}
	// The old key is withdrawn (compromised): after the next fetch, tokens
	// it signed are refused although they sit in the token cache.
	p.setKeys(publicJWK(&rsaKey2.PublicKey, "2026-02", "RS256"))
	clk.Advance(11 * time.Second)
	_, err := a.Authenticate(bearerRequest(mint(t, p.url(), clk.Now(), tokenSpec{kid: "2026-03", key: rsaKey2})))
	if reasonOf(err) != ReasonUnknownKID {
		t.Fatalf("unknown kid: %v", err)
	}
	if _, err := a.Authenticate(bearerRequest(old)); reasonOf(err) != ReasonUnknownKID {
		t.Fatalf("token of withdrawn key: %v", err)
	}
}

// Through an IdP outage, cached keys keep verifying until their lifetime
// (max(3 × refresh, 1 h)) ends; then requests fail closed.
func TestIdPOutage(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	cfg := issuerConfig(p)
	cfg.Refresh = config.Duration(time.Minute)
	a := mustAuthenticator(t, startVerifier(t, p, clk, cfg))
	p.srv.Close() // the IdP is gone
	clk.Advance(50 * time.Minute)
	tok := mint(t, p.url(), clk.Now(), tokenSpec{})
	if _, err := a.Authenticate(bearerRequest(tok)); err != nil {
		t.Fatalf("cached keys refused during outage: %v", err)
	}
	// An unknown kid during the outage is refused, not an error.
	if _, err := a.Authenticate(bearerRequest(mint(t, p.url(), clk.Now(), tokenSpec{kid: "new"}))); reasonOf(err) != ReasonUnknownKID {
		t.Fatalf("unknown kid in outage: %v", err)
	}
	clk.Advance(11 * time.Minute) // 61 min after the last good fetch
	_, err := a.Authenticate(bearerRequest(tok))
	var f *authn.Failure
	if err == nil || errors.As(err, &f) || !strings.Contains(err.Error(), "keys unavailable") {
		t.Fatalf("after key lifetime: %v, want a plain error", err)
	}
}

func TestBackgroundRefresh(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	cfg := issuerConfig(p)
	cfg.Refresh = config.Duration(20 * time.Millisecond)
	v := startVerifier(t, p, clk, cfg)
	deadline := time.Now().Add(5 * time.Second)
	for p.jwksHits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d fetches", p.jwksHits.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	n := p.jwksHits.Load()
	time.Sleep(80 * time.Millisecond)
	if p.jwksHits.Load() != n {
		t.Fatal("refresh continued after Close")
	}
	// Close without Start, and Start after Close, do nothing harmful.
	v2, _ := New(issuerConfig(p), WithHTTPClient(p.srv.Client()), WithLogger(quietLog))
	_ = v2.Close()
	_ = v2.Start(context.Background())
}

func TestTokenCache(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	v := startVerifier(t, p, clk, issuerConfig(p))
	a := mustAuthenticator(t, v)
	tok := mint(t, p.url(), clk.Now(), tokenSpec{claims: map[string]any{"exp": clk.Now().Add(2 * time.Minute).Unix()}})
	if _, err := a.Authenticate(bearerRequest(tok)); err != nil {
		t.Fatal(err)
	}
	before := sigVerifications.Load()
	for range 10 {
		pr, err := a.Authenticate(bearerRequest(tok))
		if err != nil {
			t.Fatal(err)
		}
		pr.Consumer = "tampered" // callers get copies
	}
	if n := sigVerifications.Load() - before; n != 0 {
		t.Fatalf("%d signature verifications on cache hits", n)
	}
	if pr, _ := a.Authenticate(bearerRequest(tok)); pr.Consumer != "acme-billing" {
		t.Fatal("cached principal was mutated through a returned copy")
	}
	// Expiry is checked on every hit.
	clk.Advance(2*time.Minute + time.Minute) // past exp + skew
	if _, err := a.Authenticate(bearerRequest(tok)); reasonOf(err) != ReasonExpired {
		t.Fatalf("expired cached token: %v", err)
	}

	// Bounded: the oldest entries go.
	small := startVerifier(t, p, clk, func() config.Issuer { c := issuerConfig(p); c.Name = "small"; return c }(), WithTokenCacheSize(3))
	for range 5 {
		if _, err := small.Verify(context.Background(), mint(t, p.url(), clk.Now(), tokenSpec{})); err != nil {
			t.Fatal(err)
		}
	}
	if n := small.cache.len(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
}
