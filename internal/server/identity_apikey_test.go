package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// policyAPIs is the orders API guarded by API keys with the quickstart's
// policies (scopes, BOLA, BFLA, allowed partners) plus a billing API with
// one public operation and two operations no policy names.
func policyAPIs(orders, billing string, auth string) []idAPI {
	return []idAPI{
		{Name: "orders", BasePath: "/orders/v1", Upstream: orders, Body: `    auth: [` + auth + `]
    allow_partners: [acme, globex]
    policies:
      - {operation: listOrders, scopes: ["orders:read"]}
      - {operation: getOrder, scopes: ["orders:read"]}
      - {operation: createOrder, scopes: ["orders:write"]}
      - {operation: cancelOrder, roles: [admin]}
      - operation: listCustomerOrders
        scopes: ["orders:read"]
        when: request.path.customerId in principal.claims.customers
`},
		{Name: "billing", Spec: "billing-v1.yaml", BasePath: "/billing/v1", Upstream: billing, Body: `    auth: [` + auth + `]
    policies:
      - {operation: listInvoices, public: true}
`},
	}
}

// TestIdentityAPIKeys drives API keys end to end through the TLS listener:
// issue (key service and admin API), use in both headers with the verified
// identity forwarded upstream, and every refusal: forged, unknown, wrong
// secret, expired, revoked, rotated; keys in the URL; no key at all.
func TestIdentityAPIKeys(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders-backend")
	billing := newEchoUpstream(t, "billing-backend")
	g := startIdentityGateway(t, idConfig{APIs: policyAPIs(orders.URL(), billing.URL(), "apikey")})
	svc := g.srv.Gateway().Keys()
	ctx := context.Background()

	// Keys whose end is a matter of time are made first, so one wait at
	// the end covers them all.
	acmeKey, acmeID := g.issueKey(t, "acme-billing", nil, 0)
	issuedAt := time.Now() // before the earliest of the two deadlines below
	shortKey, _ := g.issueKey(t, "acme-billing", nil, time.Second)
	oldKey, oldID := g.issueKey(t, "acme-billing", nil, 0)
	newKey, newCred, err := svc.Rotate(ctx, oldID, time.Second, "e2e")
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	timeUp := time.Now().Add(time.Second) // after both deadlines
	// Before their time is up all three work. (Checked at once: on a
	// loaded machine the rows below may start after the second is over.)
	for name, k := range map[string]string{"short-lived key": shortKey, "rotated key inside its overlap": oldKey, "its replacement": newKey} {
		s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", k)
		if time.Since(issuedAt) > 900*time.Millisecond {
			t.Logf("%s: the machine is too slow to check it before its second is over", name)
			continue
		}
		if s != http.StatusOK {
			t.Errorf("%s: %d, want 200", name, s)
		}
	}

	// One key issued through the admin API, as an operator would.
	resp, body := g.adminJSON(t, http.MethodPost, "/v1/keys", map[string]any{"consumer": "globex-ops", "scopes": []string{"orders:read", "orders:write"}, "ttl": "30d"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/keys: %d %s", resp.StatusCode, body)
	}
	var issued struct {
		Key        string `json:"key"`
		Credential struct {
			ID     string   `json:"id"`
			Scopes []string `json:"scopes"`
		} `json:"credential"`
	}
	if err := json.Unmarshal(body, &issued); err != nil || !strings.HasPrefix(issued.Key, "ghk_") {
		t.Fatalf("POST /v1/keys body: %v %s", err, body)
	}

	t.Run("valid key forwards the verified identity", func(t *testing.T) {
		spoof := []string{"X-Gatehouse-Consumer", "admin", "X-Gatehouse-Partner", "globex", "X-Gatehouse-Scopes", "orders:write admin",
			"X-Gatehouse-Auth", "mtls", "X-Gatehouse-Credential-Id", "root", "X-Gatehouse-Subject", "root"}
		cases := []struct {
			name, consumer, partner, id, scopes string
			header                              []string
		}{
			{"X-API-Key", "acme-billing", "acme", acmeID, "orders:read", []string{"X-API-Key", acmeKey}},
			{"Authorization ApiKey", "acme-billing", "acme", acmeID, "orders:read", []string{"Authorization", "ApiKey " + acmeKey}},
			{"Authorization apikey (scheme is case-insensitive)", "acme-billing", "acme", acmeID, "orders:read", []string{"Authorization", "apikey " + acmeKey}},
			{"admin-issued key", "globex-ops", "globex", issued.Credential.ID, "orders:read orders:write", []string{"X-API-Key", issued.Key}},
			{"replacement of a rotated key", "acme-billing", "acme", newCred.ID, "orders:read", []string{"X-API-Key", newKey}},
		}
		for _, tc := range cases {
			for _, proto := range protos {
				t.Run(tc.name+"/"+proto, func(t *testing.T) {
					resp, body := send(t, g.client(proto), http.MethodGet, g.base(), "/orders/v1/orders", nil, append(tc.header, spoof...)...)
					h := upstreamSaw(t, resp, body)
					for name, want := range map[string]string{
						"X-Gatehouse-Consumer": tc.consumer, "X-Gatehouse-Partner": tc.partner, "X-Gatehouse-Credential-Id": tc.id,
						"X-Gatehouse-Scopes": tc.scopes, "X-Gatehouse-Auth": "apikey",
					} {
						if got := h.Values(name); len(got) != 1 || got[0] != want {
							t.Errorf("upstream saw %s = %q, want exactly [%q]", name, got, want)
						}
					}
					if got := h.Values("X-Gatehouse-Subject"); len(got) != 0 {
						t.Errorf("upstream saw the client's X-Gatehouse-Subject %q", got)
					}
				})
			}
		}
	})

	t.Run("last use is recorded off the request path", func(t *testing.T) {
		eventually(t, 5*time.Second, "last_used_at of the used key is recorded", func() bool {
			c, err := svc.Get(ctx, acmeID)
			return err == nil && !c.LastUsedAt.IsZero() && c.LastUsedIP == "127.0.0.1"
		})
	})

	// Refusals. Everything a client could learn from them must be the
	// same whatever the internal reason; the reason goes to the log.
	var refusals []string
	var challenges []string
	refuse := func(t *testing.T, key, reason string) {
		t.Helper()
		before := orders.count()
		for _, hdr := range [][]string{{"X-API-Key", key}, {"Authorization", "ApiKey " + key}} {
			resp, body := g.call(t, http.MethodGet, "/orders/v1/orders", hdr...)
			assertUnauthorized(t, resp, body, "invalid-credential", "ApiKey", "invalid_token")
			refusals = append(refusals, withoutRequestID(t, body))
			challenges = append(challenges, resp.Header.Get("WWW-Authenticate"))
			if got := g.deniedReason(resp.Header.Get("X-Request-Id")); !strings.HasPrefix(got, reason) {
				t.Errorf("logged reason %q, want %q", got, reason)
			}
		}
		if orders.count() != before {
			t.Error("a refused key reached the upstream")
		}
	}

	revokedKey, revokedID := g.issueKey(t, "acme-billing", nil, 0)
	adminRevokedKey, adminRevokedID := g.issueKey(t, "acme-billing", nil, 0)
	attacks := []struct {
		name   string
		key    func(t *testing.T) string
		reason string
	}{
		{"bad checksum", func(*testing.T) string { return keyWithBadChecksum(acmeKey) }, "bad_checksum"},
		{"truncated", func(*testing.T) string { return acmeKey[:len(acmeKey)-1] }, "bad_format"},
		{"not a key", func(*testing.T) string { return "hunter2" }, "bad_format"},
		{"unknown id", func(*testing.T) string { return keyWithUnknownID(acmeKey) }, "unknown_key"},
		{"wrong secret", func(*testing.T) string { return keyWithOtherSecret(acmeKey) }, "bad_secret"},
		{"revoked (key service), on the very next request", func(t *testing.T) string {
			if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", revokedKey); s != 200 {
				t.Fatalf("before revocation: %d", s)
			}
			if err := svc.Revoke(ctx, revokedID, "e2e"); err != nil {
				t.Fatal(err)
			}
			return revokedKey
		}, "revoked"}, // the authenticator (store row) or the revocation list (revoked_credential)
		{"revoked (admin API), on the very next request", func(t *testing.T) string {
			if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", adminRevokedKey); s != 200 {
				t.Fatalf("before revocation: %d", s)
			}
			resp, body := g.adminJSON(t, http.MethodPost, "/v1/keys/"+adminRevokedID+"/revoke", map[string]string{"reason": "e2e"})
			if resp.StatusCode != 200 {
				t.Fatalf("admin revoke: %d %s", resp.StatusCode, body)
			}
			return adminRevokedKey
		}, "revoked"}, // the authenticator (store row) or the revocation list (revoked_credential)
		{"expired", func(t *testing.T) string { time.Sleep(time.Until(timeUp) + 50*time.Millisecond); return shortKey }, "expired"},
		{"rotated, after its overlap", func(t *testing.T) string { time.Sleep(time.Until(timeUp) + 50*time.Millisecond); return oldKey }, "rotated"},
	}
	for _, a := range attacks {
		t.Run("refused/"+a.name, func(t *testing.T) {
			refuse(t, a.key(t), a.reason)
		})
	}
	t.Run("refusals are indistinguishable", func(t *testing.T) {
		for i := range refusals {
			if refusals[i] != refusals[0] || challenges[i] != challenges[0] {
				t.Errorf("refusal %d differs from refusal 0:\n  %s %s\n  %s %s", i, challenges[i], refusals[i], challenges[0], refusals[0])
			}
		}
		t.Logf("%d refusals (%d attack rows × 2 headers), one body: %s; challenge: %s", len(refusals), len(attacks), refusals[0], challenges[0])
	})
	t.Run("the replacement outlives the rotated key", func(t *testing.T) {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", newKey); s != 200 {
			t.Errorf("new key after the overlap: %d", s)
		}
	})

	t.Run("key in the query string", func(t *testing.T) {
		before := orders.count()
		for _, q := range []string{
			"api_key=" + acmeKey,
			"apikey=" + acmeKey,
			"access_token=" + acmeKey,
			"q=" + acmeKey,                       // any parameter holding something key-shaped
			"q=" + url.QueryEscape(acmeKey[:30]), // even truncated, even encoded
			"x=1;key=" + acmeKey,                 // ; as a separator
		} {
			resp, body := g.call(t, http.MethodGet, "/orders/v1/orders?"+q, "X-API-Key", acmeKey)
			p := assertProblem(t, resp, body, http.StatusBadRequest, "invalid-request")
			if !strings.Contains(p.Detail, "header") || !strings.Contains(p.Detail, "leaked") {
				t.Errorf("?%s: detail %q does not say keys go in a header and this one leaked", q[:8], p.Detail)
			}
			if strings.Contains(string(body), acmeKey[keySecStart:keySumStart]) {
				t.Errorf("the problem echoes the key")
			}
		}
		if orders.count() != before {
			t.Error("a request with a key in its URL reached the upstream")
		}
	})

	t.Run("two different keys", func(t *testing.T) {
		resp, body := g.call(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", acmeKey, "Authorization", "ApiKey "+newKey)
		assertProblem(t, resp, body, http.StatusBadRequest, "invalid-request")
	})

	t.Run("no key on a non-public operation", func(t *testing.T) {
		resp, body := g.call(t, http.MethodGet, "/orders/v1/orders")
		assertUnauthorized(t, resp, body, "unauthorized", "ApiKey", "")
		if ch := resp.Header.Get("WWW-Authenticate"); strings.Contains(ch, "error=") {
			t.Errorf("a request without credentials got an error code: %q (RFC 6750 §3.1)", ch)
		}
	})

	t.Run("secrets never reach the log", func(t *testing.T) {
		logs := g.logs.String()
		for _, k := range []string{acmeKey, shortKey, oldKey, newKey, issued.Key, revokedKey, adminRevokedKey} {
			if strings.Contains(logs, k[keySecStart:keySumStart]) {
				t.Errorf("the gateway log holds the secret of key %s", k[keyIDStart:keyIDEnd])
			}
		}
	})
}
