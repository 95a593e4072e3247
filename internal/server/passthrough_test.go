package server_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/cli"
	"github.com/gatehouse/gatehouse/internal/store"
)

// TestObserveUnregistered: an observe_unregistered API forwards undeclared
// paths under its base path to its upstream, still behind authentication
// and its "*" policy, and discovery records them as shadow traffic. Each
// attack row has a benign twin.
func TestObserveUnregistered(t *testing.T) {
	orders := newEchoUpstream(t, "orders-backend")
	other := newEchoUpstream(t, "other-backend")
	g := startIdentityGateway(t, idConfig{
		Top: "discovery: {flush_interval: 100ms}\n",
		APIs: []idAPI{
			{Name: "orders", BasePath: "/orders/v1", Upstream: orders.URL(), Body: `    auth: [apikey]
    observe_unregistered: true
    policies:
      - {operation: "*", scopes: ["orders:write"]}
`},
			{Name: "billing", Spec: "billing-v1.yaml", BasePath: "/billing/v1", Upstream: other.URL(), Body: `    auth: [apikey]
    policies:
      - {operation: "*", scopes: ["orders:read"]}
`},
		},
	})
	writer, _ := g.issueKey(t, "globex-ops", nil, 0)   // orders:read, orders:write
	reader, _ := g.issueKey(t, "acme-billing", nil, 0) // orders:read only
	auth := func(k string) []string { return []string{"Authorization", "ApiKey " + k} }

	rows := []struct {
		name   string
		path   string
		header []string
		status int
		reach  bool // the orders upstream receives it
	}{
		{"declared, authorised", "/orders/v1/orders/1", auth(writer), 200, true},
		{"undeclared, authorised: forwarded", "/orders/v1/internal/stats", auth(writer), 200, true},
		{"undeclared, no credential: 401", "/orders/v1/internal/stats", nil, 401, false},
		{"undeclared, lacking the scope: 403", "/orders/v1/internal/stats", auth(reader), 403, false},
		{"undeclared, bad key: 401", "/orders/v1/internal/stats", auth(writer[:len(writer)-2] + "zz"), 401, false},
		{"outside the base path: 404", "/orders/v2/internal/stats", auth(writer), 404, false},
		{"base path prefix of another word: 404", "/orders/v1x/stats", auth(writer), 404, false},
		{"undeclared under an API without observe_unregistered: 404", "/billing/v1/secret", auth(writer), 404, false},
		{"dot segments cannot climb out: normalised first", "/orders/v1/../../billing/v1/secret", auth(writer), 404, false},
	}
	for _, r := range rows {
		before := orders.count()
		resp, body := g.call(t, http.MethodGet, r.path, r.header...)
		if resp.StatusCode != r.status {
			t.Errorf("%s: %s = %d, want %d: %s", r.name, r.path, resp.StatusCode, r.status, body)
			continue
		}
		if reached := orders.count() > before; reached != r.reach {
			t.Errorf("%s: upstream reached = %v, want %v", r.name, reached, r.reach)
		}
		if r.reach && strings.Contains(r.path, "internal") {
			seen := echoed(t, resp, body)
			if seen.Path != "/internal/stats" || seen.Header.Get("X-Gatehouse-Consumer") != "globex-ops" || seen.Header.Get("Authorization") != "" {
				t.Errorf("%s: upstream saw %s consumer %q auth %q", r.name, seen.Path, seen.Header.Get("X-Gatehouse-Consumer"), seen.Header.Get("Authorization"))
			}
		}
	}

	// Discovery records the forwarded path as shadow traffic, with its caller.
	eventually(t, 10*time.Second, "shadow call stored", func() bool {
		rows, err := g.srv.Store().ListDiscovery(t.Context(), store.DiscoveryFilter{})
		if err != nil {
			return false
		}
		for _, e := range rows {
			if e.Template == "/orders/v1/internal/stats" && e.Status1xx2xx == 1 {
				for _, c := range e.Callers {
					if c.Consumer == "globex-ops" && c.Partner == "globex" {
						return true
					}
				}
			}
		}
		return false
	})
}

// TestObserveUnregisteredNeedsOneStarPolicy: per-operation policies or a
// public "*" make passthrough unsafe, and the config is refused.
func TestObserveUnregisteredNeedsOneStarPolicy(t *testing.T) {
	for _, tc := range []struct{ name, policies string }{
		{"public star", `      - {operation: "*", public: true}` + "\n"},
		{"per-operation policy", `      - {operation: "*", scopes: ["orders:read"]}` + "\n" + `      - {operation: cancelOrder, roles: [admin]}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := idConfig{APIs: []idAPI{{Name: "orders", BasePath: "/orders/v1", Upstream: "http://127.0.0.1:1",
				Body: "    auth: [apikey]\n    observe_unregistered: true\n    policies:\n" + tc.policies}}}
			if err := os.MkdirAll(filepath.Join(dir, "specs"), 0o755); err != nil {
				t.Fatal(err)
			}
			copyFile(t, filepath.Join("testdata", "specs", "orders-v1.yaml"), filepath.Join(dir, "specs", "orders-v1.yaml"))
			writeFileAtomic(t, filepath.Join(dir, "gatehouse.yaml"), cfg.render())
			t.Setenv("GH_TEST_ADMIN_TOKEN", adminToken)
			out, err := validateCLI(filepath.Join(dir, "gatehouse.yaml"))
			if err == nil || !strings.Contains(out, "/apis/0/observe_unregistered: observe_unregistered needs the API's only policy to be a non-public") {
				t.Errorf("config accepted or wrong message (err %v):\n%s", err, out)
			}
		})
	}
}

func validateCLI(path string) (string, error) {
	var o, e bytes.Buffer
	root := cli.NewRoot(&o, &e)
	root.SetArgs([]string{"config", "validate", path})
	err := root.Execute()
	return o.String() + e.String(), err
}
