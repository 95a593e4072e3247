package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdentityFailClosed: when the party that vouches for a credential
// cannot be asked and nothing is cached, the gateway answers 503 — never
// 401 (the caller did nothing wrong) and never 200 (nobody checked).
func TestIdentityFailClosed(t *testing.T) {
	t.Parallel()
	// A working RFC 7662 endpoint whose behaviour the test switches.
	var mode atomic.Value // "up", "500", "garbage"
	mode.Store("up")
	var calls atomic.Int64
	intro := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if id, secret, ok := r.BasicAuth(); !ok || id != "gatehouse" || secret != "intro-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch mode.Load() {
		case "500":
			w.WriteHeader(http.StatusInternalServerError)
			return
		case "garbage":
			_, _ = w.Write([]byte("<html>maintenance</html>"))
			return
		}
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if !strings.HasPrefix(r.PostForm.Get("token"), "good-") {
			_, _ = w.Write([]byte(`{"active":false}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "client_id": "acme-billing", "scope": "orders:read",
			"exp": time.Now().Add(10 * time.Minute).Unix(), "sub": "user-1"})
	}))
	t.Cleanup(intro.Close)
	// Nothing listens on port 1, and no test listener can be given it
	// (ports below 1024 are never chosen for :0), unlike a freed port.
	dead := "http://127.0.0.1:1"

	top := fmt.Sprintf(`introspection:
  - {name: live, url: %s/introspect, client_id: gatehouse, client_secret: intro-secret, timeout: 2s}
  - {name: down, url: %s/introspect, client_id: gatehouse, client_secret: intro-secret, timeout: 2s}
issuers:
  - {name: nokeys, issuer: https://idp.invalid, jwks_url: %s/jwks, audiences: [%s], algorithms: [RS256]}
`, intro.URL, dead, dead, jwtAudience)
	orders := newEchoUpstream(t, "orders-backend")
	readAll := `    policies: [{operation: "*", scopes: ["orders:read"]}]
`
	g := startIdentityGateway(t, idConfig{Top: top, APIs: []idAPI{
		{Name: "live-orders", BasePath: "/live", Upstream: orders.URL(), Body: "    auth: [\"introspect:live\"]\n" + readAll},
		{Name: "down-orders", BasePath: "/down", Upstream: orders.URL(), Body: "    auth: [\"introspect:down\"]\n" + readAll},
		{Name: "jwt-orders", BasePath: "/jwt", Upstream: orders.URL(), Body: "    auth: [\"jwt:nokeys\"]\n" + readAll},
	}})
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	unavailable := func(t *testing.T, path string, hdr ...string) {
		t.Helper()
		before := orders.count()
		resp, body := g.call(t, http.MethodGet, path, hdr...)
		assertProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
		if orders.count() != before {
			t.Error("an unverified request reached the upstream")
		}
		if got := g.deniedReason(resp.Header.Get("X-Request-Id")); got != "unavailable" {
			t.Errorf("logged reason %q, want unavailable", got)
		}
	}

	t.Run("introspection endpoint down, nothing cached", func(t *testing.T) {
		unavailable(t, "/down/orders", bearer("good-opaque-1")...)
		unavailable(t, "/down/orders", bearer("good-opaque-1")...) // errors are not cached either
	})
	t.Run("JWT issuer whose keys never arrived", func(t *testing.T) {
		tok := rawJWT(t, map[string]any{"alg": "RS256", "kid": "k1"}, jwtClaims("https://idp.invalid", nil), []byte("sig"))
		unavailable(t, "/jwt/orders", bearer(tok)...)
	})

	t.Run("live endpoint: active, inactive, then outages", func(t *testing.T) {
		resp, body := g.call(t, http.MethodGet, "/live/orders", bearer("good-opaque-2")...)
		h := upstreamSaw(t, resp, body)
		if h.Get("X-Gatehouse-Consumer") != "acme-billing" || h.Get("X-Gatehouse-Auth") != "introspection" || h.Get("X-Gatehouse-Scopes") != "orders:read" {
			t.Errorf("upstream saw %v", h)
		}
		resp, body = g.call(t, http.MethodGet, "/live/orders", bearer("bad-opaque")...)
		assertUnauthorized(t, resp, body, "invalid-credential", "Bearer", "invalid_token")

		for _, m := range []string{"500", "garbage"} {
			mode.Store(m)
			n := calls.Load()
			// The active answer is cached: no call, still 200.
			if s := g.status(t, http.MethodGet, "/live/orders", bearer("good-opaque-2")...); s != 200 {
				t.Errorf("%s: cached active token: %d, want 200", m, s)
			}
			if calls.Load() != n {
				t.Errorf("%s: a cached active token was introspected again", m)
			}
			// A token never seen: nobody can vouch for it.
			unavailable(t, "/live/orders", bearer("good-opaque-"+m)...)
		}
		mode.Store("up")
		if s := g.status(t, http.MethodGet, "/live/orders", bearer("good-opaque-500")...); s != 200 {
			t.Errorf("after recovery: %d, want 200 (failures must not be cached)", s)
		}
		intro.Close()
		unavailable(t, "/live/orders", bearer("good-opaque-after-close")...)
	})
}
