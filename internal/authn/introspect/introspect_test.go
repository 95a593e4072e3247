package introspect

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Client credentials with characters RFC 6749 §2.3.1 form-encodes.
const (
	clientID     = "gate house"
	clientSecret = "s3cr:et/+%ü"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// authServer is a loopback RFC 7662 endpoint.
type authServer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	tokens map[string]map[string]any // token → response; absent: inactive
	status int
	body   []byte
	delay  time.Duration
	hits   atomic.Int64
}

func newAuthServer(t testing.TB) *authServer {
	s := &authServer{tokens: map[string]map[string]any{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *authServer) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	status, body, delay := s.status, s.body, s.delay
	s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if status != 0 {
		http.Error(w, `{"error":"server_error"}`, status)
		return
	}
	// RFC 7662 §2.1: POST, form-encoded, client authentication.
	user, pass, ok := r.BasicAuth()
	u, _ := url.QueryUnescape(user)
	pw, _ := url.QueryUnescape(pass)
	if !ok || u != clientID || pw != clientSecret {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspect"`)
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token_type_hint") != "access_token" {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if body != nil {
		_, _ = w.Write(body)
		return
	}
	s.mu.Lock()
	resp, found := s.tokens[r.PostForm.Get("token")]
	s.mu.Unlock()
	if !found {
		resp = map[string]any{"active": false}
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *authServer) set(token string, resp map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp == nil {
		delete(s.tokens, token)
		return
	}
	s.tokens[token] = resp
}

func (s *authServer) setStatus(code int) { s.mu.Lock(); s.status = code; s.mu.Unlock() }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testConfig(s *authServer) config.Introspection {
	return config.Introspection{
		Name:          "corp-as",
		URL:           s.srv.URL + "/introspect",
		ClientID:      clientID,
		ClientSecret:  clientSecret,
		Timeout:       config.Duration(2 * time.Second),
		CacheMaxTTL:   config.Duration(5 * time.Minute),
		InactiveTTL:   config.Duration(10 * time.Second),
		PartnerClaim:  "org",
		RolesClaim:    "roles",
		ConsumerClaim: "",
	}
}

func newAuth(t *testing.T, s *authServer, clk *fakeClock, mut func(*config.Introspection), opts ...Option) *Authenticator {
	t.Helper()
	cfg := testConfig(s)
	if mut != nil {
		mut(&cfg)
	}
	opts = append([]Option{WithHTTPClient(s.srv.Client()), WithClock(clk.Now), WithLogger(quiet)}, opts...)
	a, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func bearer(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://api.example.com/orders", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func reasonOf(err error) string {
	var f *authn.Failure
	switch {
	case err == nil:
		return ""
	case errors.As(err, &f):
		return f.Reason
	case errors.Is(err, authn.ErrNoCredential):
		return "no_credential"
	}
	return "error"
}

func activeResp(clk *fakeClock, exp time.Duration) map[string]any {
	return map[string]any{
		"active": true, "client_id": "acme-billing", "sub": "user-1", "iss": "https://as.example",
		"scope": "orders:read orders:write", "jti": "at-1", "org": "acme", "roles": []string{"reader"},
		"exp": clk.Now().Add(exp).Unix(), "token_type": "Bearer",
		"cnf": map[string]any{"x5t#S256": "abc"},
	}
}

func TestActiveToken(t *testing.T) {
	s := newAuthServer(t)
	clk := newClock()
	a := newAuth(t, s, clk, nil)
	s.set("opaque-1", activeResp(clk, time.Hour))
	p, err := a.Authenticate(bearer("opaque-1"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != authn.KindIntrospect || p.Consumer != "acme-billing" || p.Partner != "acme" || p.Subject != "user-1" ||
		p.TokenID != "at-1" || p.CredentialID != "at-1" || p.Issuer != "https://as.example" ||
		!p.ExpiresAt.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("principal = %+v", p)
	}
	if !slices.Equal(p.Scopes, []string{"orders:read", "orders:write"}) || !slices.Equal(p.Roles, []string{"reader"}) {
		t.Fatalf("scopes %v roles %v", p.Scopes, p.Roles)
	}
	if p.Claims["cnf"] == nil || a.Scheme() != "Bearer" {
		t.Fatal("claims or scheme")
	}

	// Without jti or sub, the credential ID is a truncated token hash.
	s.set("opaque-2", map[string]any{"active": true, "client_id": "svc"})
	p, err = a.Authenticate(bearer("opaque-2"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.CredentialID, "token:") || strings.Contains(p.CredentialID, "opaque") || !p.ExpiresAt.IsZero() {
		t.Fatalf("principal = %+v", p)
	}
	// A configured consumer claim replaces client_id.
	b := newAuth(t, s, clk, func(c *config.Introspection) { c.ConsumerClaim = "sub" })
	if p, _ := b.Authenticate(bearer("opaque-1")); p == nil || p.Consumer != "user-1" {
		t.Fatalf("consumer claim: %+v", p)
	}
}

func TestRefusals(t *testing.T) {
	s := newAuthServer(t)
	clk := newClock()
	a := newAuth(t, s, clk, nil)
	s.set("refresh", map[string]any{"active": true, "token_type": "refresh_token"})
	s.set("expired", map[string]any{"active": true, "exp": clk.Now().Add(-time.Second).Unix()})
	s.set("early", map[string]any{"active": true, "nbf": clk.Now().Add(time.Hour).Unix()})
	for _, tc := range []struct {
		name string
		r    *http.Request
		want string
	}{
		{"inactive", bearer("revoked-or-unknown"), ReasonInactive},
		{"refresh token", bearer("refresh"), ReasonWrongType},
		{"active but exp passed", bearer("expired"), ReasonExpired},
		{"active but nbf ahead", bearer("early"), ReasonNotYetValid},
		{"no credential", httptest.NewRequest(http.MethodGet, "/", nil), "no_credential"},
		{"query token", httptest.NewRequest(http.MethodGet, "/?access_token=opaque", nil), "token_in_query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Authenticate(tc.r)
			if got := reasonOf(err); got != tc.want {
				t.Fatalf("reason = %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

func TestCaching(t *testing.T) {
	s := newAuthServer(t)
	clk := newClock()
	a := newAuth(t, s, clk, nil) // max TTL 5m, inactive TTL 10s

	// Active, exp far away: cached for cache_max_ttl.
	s.set("long", activeResp(clk, time.Hour))
	for range 5 {
		if _, err := a.Authenticate(bearer("long")); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("%d endpoint calls for 5 requests, want 1", n)
	}
	clk.Advance(4 * time.Minute)
	s.set("long", nil) // revoked at the server: seen only after the cache entry ends
	if _, err := a.Authenticate(bearer("long")); err != nil {
		t.Fatalf("within max ttl: %v", err)
	}
	clk.Advance(61 * time.Second)
	if _, err := a.Authenticate(bearer("long")); reasonOf(err) != ReasonInactive {
		t.Fatalf("after max ttl: %v", err)
	}

	// Active, exp soon: cached until exp, not beyond.
	s.hits.Store(0)
	s.set("short", activeResp(clk, 30*time.Second))
	if _, err := a.Authenticate(bearer("short")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(29 * time.Second)
	if _, err := a.Authenticate(bearer("short")); err != nil || s.hits.Load() != 1 {
		t.Fatalf("before exp: %v, %d calls", err, s.hits.Load())
	}
	clk.Advance(time.Second)
	if _, err := a.Authenticate(bearer("short")); reasonOf(err) != ReasonExpired || s.hits.Load() != 2 {
		t.Fatalf("at exp: %v, %d calls", err, s.hits.Load())
	}

	// Inactive: cached for inactive_ttl, then asked again.
	s.hits.Store(0)
	for range 3 {
		if _, err := a.Authenticate(bearer("unknown")); reasonOf(err) != ReasonInactive {
			t.Fatal(err)
		}
	}
	if s.hits.Load() != 1 {
		t.Fatalf("%d calls for a cached inactive token", s.hits.Load())
	}
	s.set("unknown", activeResp(clk, time.Hour))
	clk.Advance(11 * time.Second)
	if _, err := a.Authenticate(bearer("unknown")); err != nil || s.hits.Load() != 2 {
		t.Fatalf("after inactive ttl: %v, %d calls", err, s.hits.Load())
	}

	// Bounded.
	small := newAuth(t, s, clk, nil, WithCacheSize(2))
	for _, tok := range []string{"a", "b", "c", "d"} {
		_, _ = small.Authenticate(bearer(tok))
	}
	if n := small.cache.len(); n != 2 {
		t.Fatalf("cache holds %d, want 2", n)
	}
}

// A burst of requests with one uncached token makes one endpoint call.
func TestConcurrentRequestsCoalesce(t *testing.T) {
	s := newAuthServer(t)
	s.delay = 50 * time.Millisecond
	clk := newClock()
	a := newAuth(t, s, clk, nil)
	s.set("burst", activeResp(clk, time.Hour))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 50 {
		wg.Go(func() {
			if _, err := a.Authenticate(bearer("burst")); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 || s.hits.Load() != 1 {
		t.Fatalf("%d failures, %d endpoint calls", failed.Load(), s.hits.Load())
	}
}

// Endpoint trouble is a plain error (503, fail closed), never a pass, and
// a cached answer keeps serving until it ends.
func TestEndpointFailuresFailClosed(t *testing.T) {
	clk := newClock()
	plainError := func(t *testing.T, err error) {
		t.Helper()
		var f *authn.Failure
		if err == nil || errors.As(err, &f) || errors.Is(err, authn.ErrNoCredential) {
			t.Fatalf("err = %v, want a plain error", err)
		}
	}
	t.Run("5xx", func(t *testing.T) {
		s := newAuthServer(t)
		a := newAuth(t, s, clk, nil)
		s.setStatus(http.StatusServiceUnavailable)
		_, err := a.Authenticate(bearer("x"))
		plainError(t, err)
		s.setStatus(0)
		s.set("x", activeResp(clk, time.Hour))
		if _, err := a.Authenticate(bearer("x")); err != nil { // errors are not cached
			t.Fatal(err)
		}
	})
	t.Run("malformed JSON", func(t *testing.T) {
		s := newAuthServer(t)
		s.body = []byte(`{"active": tru`)
		_, err := newAuth(t, s, clk, nil).Authenticate(bearer("x"))
		plainError(t, err)
	})
	t.Run("active not a boolean", func(t *testing.T) {
		s := newAuthServer(t)
		s.body = []byte(`{"active": "true"}`)
		_, err := newAuth(t, s, clk, nil).Authenticate(bearer("x"))
		plainError(t, err)
	})
	t.Run("oversized response", func(t *testing.T) {
		s := newAuthServer(t)
		s.body = []byte(`{"active": true, "pad": "` + strings.Repeat("x", maxResponseBytes) + `"}`)
		_, err := newAuth(t, s, clk, nil).Authenticate(bearer("x"))
		plainError(t, err)
		if !strings.Contains(err.Error(), "larger than") {
			t.Fatal(err)
		}
	})
	t.Run("bad client credentials", func(t *testing.T) {
		s := newAuthServer(t)
		s.set("x", activeResp(clk, time.Hour))
		a := newAuth(t, s, clk, func(c *config.Introspection) { c.ClientSecret = "wrong" })
		_, err := a.Authenticate(bearer("x"))
		plainError(t, err)
		if !strings.Contains(err.Error(), "client credentials") {
			t.Fatal(err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		s := newAuthServer(t)
		s.delay = 500 * time.Millisecond
		a := newAuth(t, s, clk, func(c *config.Introspection) { c.Timeout = config.Duration(100 * time.Millisecond) })
		start := time.Now()
		_, err := a.Authenticate(bearer("x"))
		plainError(t, err)
		if time.Since(start) > 400*time.Millisecond {
			t.Fatalf("took %v", time.Since(start))
		}
	})
	t.Run("endpoint down, nothing cached", func(t *testing.T) {
		s := newAuthServer(t)
		a := newAuth(t, s, clk, nil)
		s.srv.Close()
		_, err := a.Authenticate(bearer("x"))
		plainError(t, err)
	})
	t.Run("endpoint down, answer cached", func(t *testing.T) {
		s := newAuthServer(t)
		a := newAuth(t, s, clk, nil)
		s.set("cached", activeResp(clk, time.Hour))
		if _, err := a.Authenticate(bearer("cached")); err != nil {
			t.Fatal(err)
		}
		s.srv.Close()
		if _, err := a.Authenticate(bearer("cached")); err != nil {
			t.Fatalf("cached answer not served during outage: %v", err)
		}
		_, err := a.Authenticate(bearer("uncached"))
		plainError(t, err)
		clk.Advance(6 * time.Minute) // the cached answer ends: fail closed
		_, err = a.Authenticate(bearer("cached"))
		plainError(t, err)
	})
}

func TestCAFileAndConfig(t *testing.T) {
	s := newAuthServer(t)
	clk := newClock()
	s.set("x", activeResp(clk, time.Hour))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(s)
	cfg.CAFile = ca
	a, err := New(cfg, WithClock(clk.Now), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(bearer("x")); err != nil {
		t.Fatalf("with ca_file: %v", err)
	}
	cfg.CAFile = ""
	b, _ := New(cfg, WithClock(clk.Now), WithLogger(quiet))
	if _, err := b.Authenticate(bearer("x")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without ca_file: %v", err)
	}

	for _, tc := range []struct {
		name string
		mut  func(*config.Introspection)
		want string
	}{
		{"no url", func(c *config.Introspection) { c.URL = "" }, "url is required"},
		{"plain http", func(c *config.Introspection) { c.URL = "http://as.example.com/introspect" }, "https"},
		{"no client secret", func(c *config.Introspection) { c.ClientSecret = "" }, "client_secret"},
		{"bad ca file", func(c *config.Introspection) { c.CAFile = "/nonexistent.pem" }, "ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(s)
			tc.mut(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	cfg = testConfig(s)
	cfg.URL = "http://127.0.0.1:9/introspect"
	if _, err := New(cfg); err != nil {
		t.Fatalf("loopback http: %v", err)
	}
}

func BenchmarkIntrospectCached(b *testing.B) {
	s := newAuthServer(b)
	clk := newClock()
	s.set("tok", activeResp(clk, time.Hour))
	a, _ := New(testConfig(s), WithHTTPClient(s.srv.Client()), WithClock(clk.Now), WithLogger(quiet))
	r := bearer("tok")
	if _, err := a.Authenticate(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}
