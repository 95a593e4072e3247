package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestIdentityAuthorization drives deny-by-default authorization through
// the listener with real API keys: operations without a policy, scopes
// (with the RFC 6750 insufficient_scope challenge), allowed partners,
// object-level (BOLA) and function-level (BFLA) rules, and a public
// operation.
func TestIdentityAuthorization(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders-backend")
	billing := newEchoUpstream(t, "billing-backend")
	g := startIdentityGateway(t, idConfig{APIs: policyAPIs(orders.URL(), billing.URL(), "apikey")})

	acme, _ := g.issueKey(t, "acme-billing", nil, 0)                         // orders:read, role reader, customer c-100
	globexRead, _ := g.issueKey(t, "globex-ops", []string{"orders:read"}, 0) // fewer scopes than its consumer holds
	globexFull, _ := g.issueKey(t, "globex-ops", nil, 0)                     // orders:read orders:write, roles reader admin, customer c-200
	initech, _ := g.issueKey(t, "initech-app", nil, 0)                       // a partner the orders API does not allow
	solo, _ := g.issueKey(t, "solo-app", nil, 0)                             // no partner at all
	const missing = ""                                                       // no credential

	cases := []struct {
		name, method, path, key string
		status                  int
		reason                  string // logged internal reason for a denial
		scope                   string // insufficient_scope challenge
	}{
		// Deny by default: a valid, fully scoped key is not enough when no
		// policy names the operation.
		{"no policy: getInvoice", "GET", "/billing/v1/invoices/7", globexFull, 403, "no_policy", ""},
		{"no policy: replaceInvoice", "PUT", "/billing/v1/invoices/7", globexFull, 403, "no_policy", ""},
		// Anonymous callers are asked to authenticate first (401), so the
		// answer does not reveal which operations have policies.
		{"no policy, no credential", "GET", "/billing/v1/invoices/7", missing, 401, "no_policy", ""},
		// Public operation.
		{"public without credentials", "GET", "/billing/v1/invoices", missing, 200, "", ""},
		{"public with a valid key", "GET", "/billing/v1/invoices", acme, 200, "", ""},
		{"public with a forged key is still refused", "GET", "/billing/v1/invoices", keyWithOtherSecret(acme), 401, "bad_secret", ""},
		// Scopes.
		{"scope held", "POST", "/orders/v1/orders", globexFull, 200, "", ""},
		{"key narrower than its consumer", "POST", "/orders/v1/orders", globexRead, 403, "insufficient_scope", "orders:write"},
		{"consumer without the scope", "POST", "/orders/v1/orders", acme, 403, "insufficient_scope", "orders:write"},
		// allow_partners.
		{"allowed partner acme", "GET", "/orders/v1/orders", acme, 200, "", ""},
		{"allowed partner globex", "GET", "/orders/v1/orders", globexRead, 200, "", ""},
		{"partner not allowed", "GET", "/orders/v1/orders", initech, 403, "partner_not_allowed", ""},
		{"consumer without a partner", "GET", "/orders/v1/orders", solo, 403, "partner_not_allowed", ""},
		// BOLA: request.path.customerId in principal.claims.customers.
		{"BOLA: acme reads c-100", "GET", "/orders/v1/customers/c-100/orders", acme, 200, "", ""},
		{"BOLA: acme reads c-200", "GET", "/orders/v1/customers/c-200/orders", acme, 403, "condition_false", ""},
		{"BOLA: globex reads c-200", "GET", "/orders/v1/customers/c-200/orders", globexRead, 200, "", ""},
		{"BOLA: globex reads c-100", "GET", "/orders/v1/customers/c-100/orders", globexRead, 403, "condition_false", ""},
		{"BOLA: prefix of an own customer", "GET", "/orders/v1/customers/c-10/orders", acme, 403, "condition_false", ""},
		{"BOLA: extension of an own customer", "GET", "/orders/v1/customers/c-1000/orders", acme, 403, "condition_false", ""},
		{"BOLA: other case", "GET", "/orders/v1/customers/C-100/orders", acme, 403, "condition_false", ""},
		{"BOLA: percent-encoded own customer", "GET", "/orders/v1/customers/c%2D100/orders", acme, 200, "", ""},
		{"BOLA: percent-encoded other customer", "GET", "/orders/v1/customers/c%2D200/orders", acme, 403, "condition_false", ""},
		{"BOLA: no credential", "GET", "/orders/v1/customers/c-100/orders", missing, 401, "unauthenticated", ""},
		// BFLA: only role admin cancels.
		{"BFLA: reader cancels", "DELETE", "/orders/v1/orders/1", acme, 403, "missing_role", ""},
		{"BFLA: admin cancels", "DELETE", "/orders/v1/orders/1", globexRead, 200, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := orders
			if strings.HasPrefix(tc.path, "/billing/") {
				up = billing
			}
			before := up.count()
			var hdr []string
			if tc.key != "" {
				hdr = []string{"X-API-Key", tc.key}
			}
			resp, body := g.call(t, tc.method, tc.path, hdr...)
			switch tc.status {
			case 200:
				h := upstreamSaw(t, resp, body)
				if tc.key == "" && h.Get("X-Gatehouse-Consumer") != "" {
					t.Errorf("anonymous call forwarded as %q", h.Get("X-Gatehouse-Consumer"))
				}
				if tc.key != "" && h.Get("X-Gatehouse-Consumer") == "" {
					t.Error("authenticated call forwarded without X-Gatehouse-Consumer")
				}
				return
			case 401:
				kind := "invalid-credential"
				if tc.key == "" {
					kind = "unauthorized"
				}
				assertUnauthorized(t, resp, body, kind, "ApiKey", "")
			case 403:
				assertProblem(t, resp, body, http.StatusForbidden, "forbidden")
				ch := resp.Header.Get("WWW-Authenticate")
				if tc.scope != "" {
					want := `ApiKey realm="gatehouse", error="insufficient_scope", scope="` + tc.scope + `"`
					if ch != want {
						t.Errorf("WWW-Authenticate %q, want %q", ch, want)
					}
				} else if ch != "" {
					t.Errorf("a 403 that is not about scope carries WWW-Authenticate %q", ch)
				}
			default:
				t.Fatalf("bad case status %d", tc.status)
			}
			if up.count() != before {
				t.Error("a denied request reached the upstream")
			}
			if got := g.deniedReason(resp.Header.Get("X-Request-Id")); got != tc.reason {
				t.Errorf("logged reason %q, want %q", got, tc.reason)
			}
		})
	}
}
