package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// routingGateway registers APIs on the default host, on named hosts, with
// and without keep_base_path, behind an upstream URL with its own base
// path, and one retired API.
func routingGateway(t *testing.T) (g *gw, orders, billing *echoUpstream) {
	orders = newEchoUpstream(t, "orders-backend")
	billing = newEchoUpstream(t, "billing-backend")
	g = startGateway(t, gwConfig{APIs: []apiConfig{
		ordersAPI(orders.URL()),
		{Name: "billing", Version: "v1", Spec: "billing-v1.yaml", Upstream: billing.URL(), BasePath: "/billing/v1", KeepBasePath: true},
		{Name: "legacy", Version: "v1", Spec: "billing-v1.yaml", Upstream: billing.URL() + "/svc", BasePath: "/legacy"},
		{Name: "shop", Version: "v1", Spec: "orders-v1.yaml", Upstream: orders.URL(), Host: "shop.example.test", BasePath: "/api"},
		{Name: "invoices", Version: "v1", Spec: "billing-v1.yaml", Upstream: billing.URL(), Host: "billing.example.test", BasePath: "/api"},
		{Name: "archive", Version: "v1", Spec: "orders-v1.yaml", Upstream: orders.URL(), BasePath: "/archive/v1", Lifecycle: "retired"},
	}})
	return g, orders, billing
}

// TestRouting sends every kind of routed and refused request through the
// TLS listener over HTTP/2 and HTTP/1.1 and checks what the upstream saw.
func TestRouting(t *testing.T) {
	t.Parallel()
	g, _, _ := routingGateway(t)

	cases := []struct {
		name, method, host, path string
		status                   int
		upstream                 string // which echo upstream answered
		upPath                   string // wire path the upstream saw
		upQuery                  string
		allow                    string // Allow header on 405
	}{
		// Each operation of the orders spec, base path stripped.
		{name: "listOrders", method: "GET", path: "/orders/v1/orders", status: 200, upstream: "orders-backend", upPath: "/orders"},
		{name: "createOrder", method: "POST", path: "/orders/v1/orders", status: 200, upstream: "orders-backend", upPath: "/orders"},
		{name: "getOrder", method: "GET", path: "/orders/v1/orders/42", status: 200, upstream: "orders-backend", upPath: "/orders/42"},
		{name: "cancelOrder", method: "DELETE", path: "/orders/v1/orders/42", status: 200, upstream: "orders-backend", upPath: "/orders/42"},
		{name: "listCustomerOrders", method: "GET", path: "/orders/v1/customers/c-100/orders", status: 200, upstream: "orders-backend", upPath: "/customers/c-100/orders"},
		{name: "query passes through", method: "GET", path: "/orders/v1/orders?limit=5&q=a%20b", status: 200, upstream: "orders-backend", upPath: "/orders", upQuery: "limit=5&q=a%20b"},
		{name: "HEAD on GET route", method: "HEAD", path: "/orders/v1/orders/42", status: 200, upstream: "orders-backend", upPath: "/orders/42"},
		// keep_base_path forwards the whole path.
		{name: "keep_base_path list", method: "GET", path: "/billing/v1/invoices", status: 200, upstream: "billing-backend", upPath: "/billing/v1/invoices"},
		{name: "keep_base_path put", method: "PUT", path: "/billing/v1/invoices/7", status: 200, upstream: "billing-backend", upPath: "/billing/v1/invoices/7"},
		// An upstream URL with a path is a prefix to the stripped path.
		{name: "upstream base path", method: "GET", path: "/legacy/invoices/9", status: 200, upstream: "billing-backend", upPath: "/svc/invoices/9"},
		// Host selects the API; case and port do not matter.
		{name: "host shop", method: "GET", host: "shop.example.test", path: "/api/orders", status: 200, upstream: "orders-backend", upPath: "/orders"},
		{name: "host shop upper-case with port", method: "GET", host: "SHOP.Example.Test:443", path: "/api/orders/9", status: 200, upstream: "orders-backend", upPath: "/orders/9"},
		{name: "host billing", method: "GET", host: "billing.example.test", path: "/api/invoices", status: 200, upstream: "billing-backend", upPath: "/invoices"},
		{name: "host billing has no orders", method: "GET", host: "billing.example.test", path: "/api/orders", status: 404},
		{name: "named host does not fall back to default APIs", method: "GET", host: "shop.example.test", path: "/orders/v1/orders", status: 404},
		{name: "unknown host uses default APIs", method: "GET", host: "other.example.test", path: "/orders/v1/orders", status: 200, upstream: "orders-backend", upPath: "/orders"},
		{name: "host-only API not on default host", method: "GET", path: "/api/orders", status: 404},
		// Unknown paths.
		{name: "unknown API", method: "GET", path: "/nope", status: 404},
		{name: "unknown operation", method: "GET", path: "/orders/v1/refunds", status: 404},
		{name: "base path alone", method: "GET", path: "/orders/v1", status: 404},
		{name: "root", method: "GET", path: "/", status: 404},
		{name: "retired API", method: "GET", path: "/archive/v1/orders", status: 404},
		{name: "retired API by id", method: "GET", path: "/archive/v1/orders/1", status: 404},
		// Known path, wrong method.
		{name: "PUT on collection", method: "PUT", path: "/orders/v1/orders", status: 405, allow: "GET, HEAD, POST"},
		{name: "PATCH on item", method: "PATCH", path: "/orders/v1/orders/1", status: 405, allow: "DELETE, GET, HEAD"},
		{name: "POST on keep_base_path list", method: "POST", path: "/billing/v1/invoices", status: 405, allow: "GET, HEAD"},
		{name: "DELETE on named host", method: "DELETE", host: "billing.example.test", path: "/api/invoices/1", status: 405, allow: "GET, HEAD, PUT"},
	}
	for _, proto := range protos {
		for _, tc := range cases {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				resp, body := g.do(t, g.client(proto), tc.method, tc.path, reqOpts{host: tc.host})
				switch tc.status {
				case 404:
					assertProblem(t, resp, body, 404, "not-found")
					return
				case 405:
					assertProblem(t, resp, body, 405, "method-not-allowed")
					if got := resp.Header.Get("Allow"); got != tc.allow {
						t.Errorf("Allow %q, want %q", got, tc.allow)
					}
					return
				}
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
				}
				if got := resp.Header.Get("X-Upstream"); got != tc.upstream {
					t.Errorf("answered by %q, want %q", got, tc.upstream)
				}
				if tc.method == "HEAD" {
					if len(body) != 0 {
						t.Errorf("HEAD response has a body: %q", body)
					}
					return
				}
				s := echoed(t, resp, body)
				if s.Method != tc.method {
					t.Errorf("upstream saw method %s, want %s", s.Method, tc.method)
				}
				if s.WirePath != tc.upPath {
					t.Errorf("upstream saw path %q, want %q", s.WirePath, tc.upPath)
				}
				if s.Query != tc.upQuery {
					t.Errorf("upstream saw query %q, want %q", s.Query, tc.upQuery)
				}
				wantHost := tc.host
				if wantHost == "" {
					wantHost = g.srv.HTTPSAddr()
				}
				if got := s.Header.Get("X-Forwarded-Host"); got != wantHost {
					t.Errorf("X-Forwarded-Host %q, want %q", got, wantHost)
				}
				if s.Header.Get("X-Request-Id") != resp.Header.Get("X-Request-Id") {
					t.Errorf("upstream X-Request-Id %q, response %q", s.Header.Get("X-Request-Id"), resp.Header.Get("X-Request-Id"))
				}
			})
		}
	}
}

// TestHeadReachesUpstreamAsHead checks the implicit HEAD route forwards a
// HEAD (not a GET) so the upstream can skip the body.
func TestHeadReachesUpstreamAsHead(t *testing.T) {
	t.Parallel()
	g, orders, _ := routingGateway(t)
	id := "head-check-abcdefgh"
	resp, _ := g.do(t, g.h2, http.MethodHead, "/orders/v1/orders/5", reqOpts{header: http.Header{"X-Request-Id": {id}}})
	if resp.StatusCode != 200 {
		t.Fatalf("HEAD status %d", resp.StatusCode)
	}
	seen := orders.byRequestID(id)
	if len(seen) != 1 || seen[0].Method != http.MethodHead || seen[0].WirePath != "/orders/5" {
		t.Fatalf("upstream saw %+v, want one HEAD /orders/5", seen)
	}
}

// TestRetiredAPIListedButUnreachable: lifecycle retired removes the routes
// but keeps the API in the inventory the admin API lists.
func TestRetiredAPIListedButUnreachable(t *testing.T) {
	t.Parallel()
	g, orders, _ := routingGateway(t)
	before := orders.count()
	for _, proto := range protos {
		resp, body := g.get(t, g.client(proto), "/archive/v1/orders/1")
		assertProblem(t, resp, body, 404, "not-found")
	}
	if orders.count() != before {
		t.Fatal("a request to the retired API reached its upstream")
	}
	resp, body := g.adminDo(t, http.MethodGet, "/v1/apis", adminToken)
	if resp.StatusCode != 200 {
		t.Fatalf("/v1/apis: %d %s", resp.StatusCode, body)
	}
	var list struct {
		APIs []struct {
			Name, Lifecycle, BasePath string
			Operations                int
		} `json:"apis"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range list.APIs {
		if a.Name == "archive" {
			found = true
			if a.Lifecycle != "retired" {
				t.Errorf("archive lifecycle %q, want retired", a.Lifecycle)
			}
		}
	}
	if !found {
		t.Fatalf("retired API missing from /v1/apis: %s", body)
	}
	if len(list.APIs) != 6 {
		t.Errorf("/v1/apis lists %d APIs, want 6: %s", len(list.APIs), body)
	}
	if strings.Contains(string(body), "127.0.0.1") {
		t.Errorf("/v1/apis reveals upstream addresses: %s", body)
	}
}
