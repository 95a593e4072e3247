package server_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestAdminEndpoints: health, readiness and metrics are open; the admin API
// needs the bearer token and never lists upstream addresses.
func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders-backend")
	billing := newEchoUpstream(t, "billing-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(orders.URL()), billingAPI(billing.URL())}})
	// One request so the per-request series carry samples.
	resp, body := g.get(t, g.h2, "/orders/v1/orders")
	echoed(t, resp, body)

	t.Run("healthz", func(t *testing.T) {
		resp, body := g.adminDo(t, http.MethodGet, "/healthz", "")
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
			t.Fatalf("/healthz: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("readyz", func(t *testing.T) {
		resp, body := g.adminDo(t, http.MethodGet, "/readyz", "")
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"ready"`) {
			t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		text := g.scrape(t)
		for _, name := range []string{
			"gatehouse_requests_total", "gatehouse_request_duration_seconds_bucket", "gatehouse_request_duration_seconds_count",
			"gatehouse_config_reloads_total", "gatehouse_build_info", // upstream errors: see TestUpstreamFailures
		} {
			if !strings.Contains(text, "\n"+name) && !strings.HasPrefix(text, name) {
				t.Errorf("/metrics has no %s", name)
			}
		}
		if v := metricValue(text, "gatehouse_requests_total", "api", "orders", "operation", "listOrders", "status_class", "2xx", "decision", "allow"); v != 1 {
			t.Errorf("gatehouse_requests_total for the one listOrders call = %v, want 1", v)
		}
		if v := metricValue(text, "gatehouse_request_duration_seconds_count", "api", "orders", "operation", "listOrders"); v != 1 {
			t.Errorf("gatehouse_request_duration_seconds_count = %v, want 1", v)
		}
		if v := metricValue(text, "gatehouse_config_reloads_total", "result", "failure"); v != 0 {
			t.Errorf("reload failures at start = %v", v)
		}
		if !strings.Contains(text, `gatehouse_config_reloads_total{result="success"}`) {
			t.Error("the reload success series is not pre-created")
		}
	})
	t.Run("apis auth", func(t *testing.T) {
		cases := []struct {
			name, auth string
			status     int
		}{
			{"no token", "", 401},
			{"wrong token", "Bearer wrong-token-0000000000", 401},
			{"token prefix", "Bearer " + adminToken[:len(adminToken)-1], 401},
			{"lower-case scheme", "bearer " + adminToken, 401},
			{"basic scheme", "Basic " + adminToken, 401},
			{"right token", "Bearer " + adminToken, 200},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, "http://"+g.srv.AdminAddr()+"/v1/apis", nil)
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				resp, err := g.admin.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var m map[string]any
				err = json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
				if err != nil {
					t.Fatalf("body: %v", err)
				}
				if tc.status == 401 {
					if resp.Header.Get("WWW-Authenticate") == "" {
						t.Error("401 without WWW-Authenticate")
					}
					if resp.Header.Get("Content-Type") != "application/problem+json" {
						t.Errorf("401 Content-Type %q", resp.Header.Get("Content-Type"))
					}
					if _, ok := m["apis"]; ok {
						t.Error("401 body lists APIs")
					}
				}
			})
		}
	})
	t.Run("apis listing", func(t *testing.T) {
		resp, body := g.adminDo(t, http.MethodGet, "/v1/apis", adminToken)
		if resp.StatusCode != 200 {
			t.Fatalf("/v1/apis: %d %s", resp.StatusCode, body)
		}
		var list struct {
			APIs []map[string]any `json:"apis"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, a := range list.APIs {
			names[a["name"].(string)] = true
			for k := range a {
				if strings.Contains(strings.ToLower(k), "upstream") {
					t.Errorf("listing has field %q", k)
				}
			}
		}
		if !names["orders"] || !names["billing"] || len(list.APIs) != 2 {
			t.Errorf("listing %s, want orders and billing", body)
		}
		for _, u := range []string{orders.URL(), billing.URL()} {
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
			if strings.Contains(string(body), "127.0.0.1") || strings.Contains(string(body), ":"+port) {
				t.Errorf("listing reveals upstream %s: %s", u, body)
			}
		}
	})
	t.Run("unknown admin path needs the token too", func(t *testing.T) {
		resp, _ := g.adminDo(t, http.MethodGet, "/v1/secrets", "")
		if resp.StatusCode != 401 {
			t.Errorf("unknown path without token: %d, want 401", resp.StatusCode)
		}
		resp, _ = g.adminDo(t, http.MethodGet, "/v1/secrets", adminToken)
		if resp.StatusCode != 404 {
			t.Errorf("unknown path with token: %d, want 404", resp.StatusCode)
		}
	})
	t.Run("admin API not on the data plane", func(t *testing.T) {
		resp, body := g.do(t, g.h2, http.MethodGet, "/v1/apis", reqOpts{header: http.Header{"Authorization": {"Bearer " + adminToken}}})
		assertProblem(t, resp, body, 404, "not-found")
	})
}

// TestAdminAPIDisabledWithoutToken: with no admin token configured the
// admin API answers 403 whatever is sent; health and metrics still work.
func TestAdminAPIDisabledWithoutToken(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{NoAdminToken: true, APIs: []apiConfig{ordersAPI(up.URL())}})
	for _, tok := range []string{"", adminToken, "anything-at-all-1234"} {
		resp, body := g.adminDo(t, http.MethodGet, "/v1/apis", tok)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("/v1/apis with token %q: %d %s, want 403", tok, resp.StatusCode, body)
		}
		if strings.Contains(string(body), "orders") {
			t.Errorf("disabled admin API leaks the registry: %s", body)
		}
	}
	resp, _ := g.adminDo(t, http.MethodPost, "/v1/reload", "")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /v1/reload: %d, want 403", resp.StatusCode)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, _ := g.adminDo(t, http.MethodGet, p, ""); resp.StatusCode != 200 {
			t.Errorf("%s: %d, want 200", p, resp.StatusCode)
		}
	}
}
