package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/cli"
	"github.com/gatehouse/gatehouse/internal/discover"
	"github.com/gatehouse/gatehouse/internal/registry"
	"github.com/gatehouse/gatehouse/internal/store"
)

// TestDiscoveryEndToEnd drives real calls through the listener (routed ones,
// 404s and calls to a deprecated API), waits for the flusher to store them,
// then runs `gatehouse discover report` and `discover openapi` against the
// same store, as an operator would beside a running gateway.
func TestDiscoveryEndToEnd(t *testing.T) {
	up := newEchoUpstream(t, "orders")
	billing := billingAPI(up.URL())
	billing.Lifecycle = "deprecated"
	billing.APIExtra = "    deprecation: {on: 2026-01-01}\n"
	g := startGateway(t, gwConfig{
		APIs:  []apiConfig{ordersAPI(up.URL()), billing},
		Extra: "discovery: {flush_interval: 100ms, merge_after: 10}\n",
	})
	obs := g.srv.Gateway().Observer()
	if obs == nil {
		t.Fatal("discovery is on by default but the gateway has no observer")
	}

	calls := []struct {
		method, path string
		status       int
	}{
		{"GET", "/orders/v1/orders/42", 200},
		{"GET", "/orders/v1/orders/43", 200},
		{"GET", "/orders/v1/orders/550e8400-e29b-41d4-a716-446655440000", 200},
		{"DELETE", "/orders/v1/orders/44", 200},
		{"GET", "/orders/v1/orders/7/internal-notes", 404},
		{"GET", "/orders/v1/orders/8/internal-notes", 404},
		{"GET", "/orders/v1/admin/debug", 404},
		{"PATCH", "/orders/v1/orders/9", 405},
		{"GET", "/billing/v1/invoices/inv_8fK2mQ9xLp3Z", 200},
		{"GET", "/oauth2/token", 404}, // not Gatehouse's token endpoint here: plain shadow traffic
	}
	for _, c := range calls {
		resp, _ := g.do(t, g.h1, c.method, c.path, reqOpts{})
		if resp.StatusCode != c.status {
			t.Fatalf("%s %s = %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
	}

	st := g.srv.Store()
	var rows []store.DiscoveredEndpoint
	eventually(t, 10*time.Second, "observations flushed to the store", func() bool {
		var err error
		rows, err = st.ListDiscovery(t.Context(), store.DiscoveryFilter{})
		var total int64
		for _, r := range rows {
			total += r.Count
		}
		return err == nil && total == int64(len(calls))
	})
	for _, r := range rows {
		if r.Host != "127.0.0.1" {
			t.Errorf("host %q: the port must be stripped", r.Host)
		}
	}

	// The report, through the CLI, against the store the gateway writes.
	t.Setenv("GH_TEST_ADMIN_TOKEN", adminToken) // the CLI reads the config with the process environment
	out := discoverCLI(t, "discover", "report", "--json", "-c", g.cfgPath)
	var rep discover.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	shadow := map[string]string{}
	for _, s := range rep.Shadow {
		shadow[s.Method+" "+s.Template] = s.Reason
	}
	for k, reason := range map[string]string{
		// Ints and a UUID were seen at that position: a string parameter.
		"GET /orders/v1/orders/{str}/internal-notes": "undeclared_path",
		"GET /orders/v1/admin/debug":                 "undeclared_path",
		"PATCH /orders/v1/orders/{str}":              "undeclared_method",
		"GET /oauth2/token":                          "undeclared_path",
	} {
		if shadow[k] != reason {
			t.Errorf("shadow %s: reason %q, want %q (shadow: %v)", k, shadow[k], reason, shadow)
		}
	}
	if len(rep.Shadow) != 4 {
		t.Errorf("shadow = %v, want exactly the 4 undeclared endpoints", shadow)
	}
	if len(rep.Zombie) != 1 || rep.Zombie[0].API != "billing" || rep.Zombie[0].OperationID != "getInvoice" || rep.Zombie[0].Count != 1 {
		t.Errorf("zombie = %+v, want billing getInvoice once", rep.Zombie)
	}
	orphans := map[string]bool{}
	for _, o := range rep.Orphans {
		orphans[o.OperationID] = true
	}
	for _, id := range []string{"listOrders", "createOrder", "listCustomerOrders", "listInvoices"} {
		if !orphans[id] {
			t.Errorf("orphan %s missing: %v", id, orphans)
		}
	}
	for _, id := range []string{"getOrder", "cancelOrder", "getInvoice"} {
		if orphans[id] {
			t.Errorf("%s was called but reported as orphan", id)
		}
	}
	text := discoverCLI(t, "discover", "report", "-c", g.cfgPath)
	t.Log("\n" + text)
	for _, want := range []string{"Shadow endpoints (4)", "Zombie endpoints (1)", "billing", "/orders/v1/admin/debug", "Drift (0)"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}

	// The learned document loads as a Gatehouse spec, and its paths are
	// what was observed.
	file := filepath.Join(t.TempDir(), "learned.yaml")
	discoverCLI(t, "discover", "openapi", "--host", "127.0.0.1", "-o", file, "-c", g.cfgPath)
	doc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := registry.ParseSpec(file, doc)
	if err != nil {
		t.Fatalf("learned OpenAPI does not load as a spec: %v\n%s", err, doc)
	}
	paths := map[string]bool{}
	for _, o := range spec.Operations {
		paths[o.Method+" "+o.Path] = true
	}
	for _, want := range []string{"GET /orders/v1/orders/{orderId}", "GET /orders/v1/orders/{orderId}/internal-notes", "GET /billing/v1/invoices/{invoiceId}"} {
		if !paths[want] {
			t.Errorf("learned spec lacks %s: %v", want, paths)
		}
	}
	if !bytes.Contains(doc, []byte("openapi: 3.1.0")) || !bytes.Contains(doc, []byte("type: string")) {
		t.Errorf("learned spec:\n%s", doc)
	}

	m := g.scrape(t)
	if v := metricValue(m, "gatehouse_discovery_endpoints"); v < 6 {
		t.Errorf("gatehouse_discovery_endpoints = %v", v)
	}
	if v := metricValue(m, "gatehouse_discovery_sample_every"); v != 1 {
		t.Errorf("gatehouse_discovery_sample_every = %v", v)
	}
	if v := metricValue(m, "gatehouse_discovery_dropped_total"); v != 0 {
		t.Errorf("gatehouse_discovery_dropped_total = %v", v)
	}

	// A reload keeps the observer and what it learned.
	if err := g.srv.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if g.srv.Gateway().Observer() != obs {
		t.Error("reload replaced the observer")
	}
}

// TestDiscoveryDisabled: enabled: false records nothing.
func TestDiscoveryDisabled(t *testing.T) {
	up := newEchoUpstream(t, "orders")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}, Extra: "discovery: {enabled: false, flush_interval: 50ms}\n"})
	for _, p := range []string{"/orders/v1/orders/1", "/nope"} {
		resp, _ := g.do(t, g.h1, http.MethodGet, p, reqOpts{})
		_ = resp
	}
	if got := g.srv.Gateway().Observer().Peek(); len(got) != 0 {
		t.Errorf("disabled discovery observed %v", got)
	}
}

func discoverCLI(t *testing.T, args ...string) string {
	t.Helper()
	var o, e bytes.Buffer
	root := cli.NewRoot(&o, &e)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("gatehouse %s: %v\n%s", strings.Join(args, " "), err, e.String())
	}
	return o.String()
}

// TestDiscoveryBodySchemas: a sampled JSON request body becomes the
// learned operation's requestBody schema (its shape, never its values),
// and the upstream still receives the body unchanged.
func TestDiscoveryBodySchemas(t *testing.T) {
	t.Setenv("GH_TEST_ADMIN_TOKEN", adminToken) // the CLI reads the config with the process environment
	up := newEchoUpstream(t, "orders")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}, Extra: "discovery: {flush_interval: 100ms}\n"})
	body := `{"sku":"secret-sku-77","qty":3,"ship":{"express":true}}`
	resp, got := g.do(t, g.h1, "POST", "/orders/v1/orders", reqOpts{header: http.Header{"Content-Type": {"application/json"}}, body: strings.NewReader(body)})
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, got)
	}
	seen := up.byRequestID(resp.Header.Get("X-Request-Id"))
	if len(seen) != 1 || seen[0].BodyBytes != int64(len(body)) {
		t.Fatalf("the upstream received %+v, want the body unchanged", seen)
	}
	file := filepath.Join(t.TempDir(), "learned.yaml")
	eventually(t, 10*time.Second, "the learned spec has the request body schema", func() bool {
		discoverCLI(t, "discover", "openapi", "--host", "127.0.0.1", "-o", file, "-c", g.cfgPath)
		doc, err := os.ReadFile(file)
		return err == nil && bytes.Contains(doc, []byte("requestBody:")) && bytes.Contains(doc, []byte("sku:")) && bytes.Contains(doc, []byte("express:"))
	})
	doc, _ := os.ReadFile(file)
	if bytes.Contains(doc, []byte("secret-sku-77")) {
		t.Errorf("a body value reached the learned spec:\n%s", doc)
	}
	if _, err := registry.ParseSpec(file, doc); err != nil {
		t.Errorf("learned spec with a body schema does not load: %v\n%s", err, doc)
	}
}
