package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/server"
)

// lineOf returns the 1-based line of the first line of text containing
// marker.
func lineOf(t *testing.T, text, marker string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("marker %q not in text", marker)
	return 0
}

// problemsOf unwraps config.Problems from err and checks that every
// problem names a file and a line.
func problemsOf(t *testing.T, err error) config.Problems {
	t.Helper()
	if err == nil {
		t.Fatal("no error, want config problems")
	}
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %T %q is not config.Problems", err, err)
	}
	for _, p := range ps.Errors() {
		if p.File == "" || p.Line <= 0 {
			t.Errorf("problem without file:line: %q", p.String())
		}
	}
	return ps
}

// hasProblemAt reports whether some error problem is at file:line.
func hasProblemAt(ps config.Problems, file string, line int) bool {
	prefix := fmt.Sprintf("%s:%d: ", file, line)
	for _, p := range ps.Errors() {
		if p.File == file && p.Line == line && strings.HasPrefix(p.String(), prefix) {
			return true
		}
	}
	return false
}

// loadWorkers hammers path with HTTP/2 and HTTP/1.1 clients until stop is
// closed, each worker bounded by maxPerWorker requests and the hard limit.
type loadWorkers struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstFails []string
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startLoad(g *gw, path string, workers, maxPerWorker int, hardLimit time.Duration) *loadWorkers {
	l := &loadWorkers{stop: make(chan struct{})}
	deadline := time.Now().Add(hardLimit)
	for w := 0; w < workers; w++ {
		c := g.h2
		if w%2 == 1 {
			c = g.h1
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; i < maxPerWorker && time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, body, err := g.try(c, http.MethodGet, path, reqOpts{})
				if err == nil && resp.StatusCode == http.StatusOK {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.firstFails) < 5 {
					if err != nil {
						l.firstFails = append(l.firstFails, err.Error())
					} else {
						l.firstFails = append(l.firstFails, fmt.Sprintf("%d %s", resp.StatusCode, body))
					}
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *loadWorkers) finish() {
	close(l.stop)
	l.wg.Wait()
}

func status(t *testing.T, g *gw, path string) int {
	t.Helper()
	resp, _, err := g.try(g.h2, http.MethodGet, path, reqOpts{})
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode
}

// TestHotReloadUnderLoad: while four clients hammer a route, a good config
// change (by file watch) applies, a bad one (unknown key and a broken spec)
// is rejected with file:line problems while the old config keeps serving,
// and direct and admin-API reloads work; not one request fails.
func TestHotReloadUnderLoad(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders-backend")
	billing := newEchoUpstream(t, "billing-backend")
	cfg1 := gwConfig{APIs: []apiConfig{ordersAPI(orders.URL())}}
	g := startGateway(t, cfg1, withWatch)
	ctx := context.Background()
	metric := func(result string) float64 {
		return metricValue(g.scrape(t), "gatehouse_config_reloads_total", "result", result)
	}

	start := time.Now()
	load := startLoad(g, "/orders/v1/orders", 4, 20000, 10*time.Second)
	defer func() {
		if load.stop != nil {
			select {
			case <-load.stop:
			default:
				load.finish()
			}
		}
	}()

	// (a) A good change, picked up by the file watcher.
	if status(t, g, "/billing/v1/invoices") != 404 {
		t.Fatal("billing routes before it is configured")
	}
	cfg2 := gwConfig{APIs: []apiConfig{ordersAPI(orders.URL()), billingAPI(billing.URL())}}
	writeFileAtomic(t, g.cfgPath, cfg2.render())
	eventually(t, 5*time.Second, "the added API routes after the config file changed", func() bool {
		return status(t, g, "/billing/v1/invoices") == 200
	})
	if metric("success") < 1 {
		t.Error("successful reload not counted")
	}

	// (b) A bad change: unknown key and a broken spec.
	failures := metric("failure")
	badCfg := cfg2.render() + "listen_typo: true\n"
	badLine := lineOf(t, badCfg, "listen_typo")
	specPath := filepath.Join(g.dir, "specs", "billing-v1.yaml")
	goodSpec, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join("testdata", "broken-spec.yaml"), specPath)
	writeFileAtomic(t, g.cfgPath, badCfg)
	err = g.srv.Reload(ctx)
	ps := problemsOf(t, err)
	if !hasProblemAt(ps, g.cfgPath, badLine) {
		t.Errorf("Reload problems %q do not name %s:%d (the unknown key)", ps, g.cfgPath, badLine)
	}
	eventually(t, 5*time.Second, "failed reloads counted", func() bool { return metric("failure") > failures })
	for _, p := range []string{"/billing/v1/invoices", "/orders/v1/orders"} {
		if s := status(t, g, p); s != 200 {
			t.Errorf("after a rejected reload %s answers %d, want the old config's 200", p, s)
		}
	}
	// The admin API reports the same problems to an operator.
	resp, body := g.adminDo(t, http.MethodPost, "/v1/reload", adminToken)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), fmt.Sprintf("gatehouse.yaml:%d", badLine)) {
		t.Errorf("POST /v1/reload with a bad config: %d %s", resp.StatusCode, body)
	}

	// (c) Fixed again and reloaded directly.
	successes := metric("success")
	writeFileAtomic(t, specPath, string(goodSpec))
	cfg3 := gwConfig{APIs: append(cfg2.APIs, apiConfig{Name: "legacy", Version: "v1", Spec: "billing-v1.yaml", Upstream: billing.URL(), BasePath: "/legacy"})}
	writeFileAtomic(t, g.cfgPath, cfg3.render())
	if err := g.srv.Reload(ctx); err != nil {
		t.Fatalf("Reload of a good config: %v", err)
	}
	if metric("success") <= successes {
		t.Error("direct reload not counted as a success")
	}
	for _, p := range []string{"/legacy/invoices", "/billing/v1/invoices", "/orders/v1/orders"} {
		if s := status(t, g, p); s != 200 {
			t.Errorf("after the direct reload %s answers %d, want 200", p, s)
		}
	}
	resp, body = g.adminDo(t, http.MethodPost, "/v1/reload", adminToken)
	if resp.StatusCode != 200 {
		t.Errorf("POST /v1/reload: %d %s", resp.StatusCode, body)
	}

	// Keep the load on for at least two seconds in all.
	if d := 2*time.Second - time.Since(start); d > 0 {
		time.Sleep(d)
	}
	load.finish()
	ok, failed := load.ok.Load(), load.failed.Load()
	t.Logf("%d requests in %v during reloads, %d failed", ok+failed, time.Since(start).Round(time.Millisecond), failed)
	if failed != 0 {
		t.Errorf("%d requests failed during reloads, e.g. %q", failed, load.firstFails)
	}
	if ok < 50 {
		t.Errorf("only %d requests made: the load did not run", ok)
	}
}

// TestInFlightRequestSurvivesReload: a request started on the old config
// completes on it after a reload that removes its API and changes the
// upstream transport.
func TestInFlightRequestSurvivesReload(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders-backend")
	billing := newEchoUpstream(t, "billing-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(orders.URL())}})

	const id = "in-flight-across-reload"
	type result struct {
		resp *http.Response
		body []byte
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		resp, body, err := g.try(g.h2, http.MethodGet, "/orders/v1/orders/1?sleep=800ms", reqOpts{header: http.Header{"X-Request-Id": {id}}})
		done <- result{resp, body, err, time.Since(start)}
	}()
	eventually(t, 5*time.Second, "the slow request reached the upstream", func() bool { return len(orders.byRequestID(id)) == 1 })

	next := gwConfig{
		Limits: map[string]string{"upstream_connect_timeout": "3s"}, // a new upstream transport
		APIs:   []apiConfig{billingAPI(billing.URL())},
	}
	writeFileAtomic(t, g.cfgPath, next.render())
	if err := g.srv.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if s := status(t, g, "/orders/v1/orders/1"); s != 404 {
		t.Errorf("after the reload the removed API answers %d, want 404", s)
	}
	if s := status(t, g, "/billing/v1/invoices"); s != 200 {
		t.Errorf("after the reload the new API answers %d, want 200", s)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("in-flight request failed across the reload: %v", r.err)
		}
		s := echoed(t, r.resp, r.body)
		if s.WirePath != "/orders/1" {
			t.Errorf("in-flight request reached %q", s.WirePath)
		}
		if r.took < 700*time.Millisecond {
			t.Errorf("request took %v: it was not in flight during the reload", r.took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request did not complete")
	}
}

// TestReloadByFileWatch: with Options.Watch, changes to the config file and
// to a spec it names apply without a call to Reload.
func TestReloadByFileWatch(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders-backend")
	billing := newEchoUpstream(t, "billing-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(orders.URL())}}, withWatch)

	// The config file.
	writeFileAtomic(t, g.cfgPath, gwConfig{APIs: []apiConfig{ordersAPI(orders.URL()), billingAPI(billing.URL())}}.render())
	eventually(t, 5*time.Second, "new API routes after a config file change", func() bool { return status(t, g, "/billing/v1/invoices") == 200 })

	// A spec the config names, edited in place (not renamed).
	if s := status(t, g, "/orders/v1/orders/1/items"); s != 404 {
		t.Fatalf("undeclared operation answers %d", s)
	}
	specPath := filepath.Join(g.dir, "specs", "orders-v1.yaml")
	spec, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	spec = append(spec, "  /orders/{orderId}/items:\n    get:\n      operationId: listOrderItems\n      responses:\n        \"200\": {description: Items}\n"...)
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "new operation routes after a spec change", func() bool { return status(t, g, "/orders/v1/orders/1/items") == 200 })

	// Removing an API by file.
	writeFileAtomic(t, g.cfgPath, gwConfig{APIs: []apiConfig{ordersAPI(orders.URL())}}.render())
	eventually(t, 5*time.Second, "removed API stops routing", func() bool { return status(t, g, "/billing/v1/invoices") == 404 })
	if s := status(t, g, "/orders/v1/orders/1/items"); s != 200 {
		t.Errorf("orders API answers %d after the removal of another API", s)
	}
}

// startErr runs server.Start on a config text and returns its error
// (closing the server if it unexpectedly started).
func startErr(t *testing.T, cfgText string, extra map[string]string) (dir, cfgPath string, err error) {
	t.Helper()
	dir, cfgPath = prepareDir(t, cfgText)
	for name, content := range extra {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, server.Options{ConfigPath: cfgPath, Version: "e2e-test", Env: testEnv,
		Logger: slog.New(slog.NewTextHandler(&syncBuffer{}, nil))})
	if err == nil {
		srv.Close()
	}
	return dir, cfgPath, err
}

// TestStartRejectsBadConfig: server.Start returns config.Problems naming
// file:line for every problem, in the config and in the specs it names.
func TestStartRejectsBadConfig(t *testing.T) {
	t.Parallel()
	t.Run("config problems", func(t *testing.T) {
		t.Parallel()
		text := `version: 1
listen:
  https: 127.0.0.1:0
  tls: {dev_cert: true, cert: certs/gateway.crt, key: certs/gateway.key, min_version: "1.1"}
  bogus_listen_key: true
admin:
  listen: 127.0.0.1:0
  token: short
store: {sqlite: data/gatehouse.db}
limits:
  max_header_bytes: 10
  read_timeout: soon
apis:
  - name: Orders
    version: v1
    spec: specs/orders-v1.yaml
    upstream: ftp://127.0.0.1:9
    route: {base_path: /orders/v1/}
`
		_, cfgPath, err := startErr(t, text, nil)
		ps := problemsOf(t, err)
		for _, marker := range []string{`min_version: "1.1"`, "bogus_listen_key", "token: short", "max_header_bytes: 10",
			"read_timeout: soon", "name: Orders", "upstream: ftp", "base_path: /orders/v1/"} {
			if line := lineOf(t, text, marker); !hasProblemAt(ps, cfgPath, line) {
				t.Errorf("no problem at %s:%d (%s); got:\n%s", filepath.Base(cfgPath), line, marker, ps)
			}
		}
	})
	t.Run("broken spec", func(t *testing.T) {
		t.Parallel()
		up := "http://" + closedAddr(t)
		text := gwConfig{APIs: []apiConfig{{Name: "broken", Version: "v1", Spec: "broken.yaml", Upstream: up, BasePath: "/b"}}}.render()
		broken, err := os.ReadFile(filepath.Join("testdata", "broken-spec.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		dir, _, err := startErr(t, text, map[string]string{"specs/broken.yaml": string(broken)})
		ps := problemsOf(t, err)
		spec := filepath.Join(dir, "specs", "broken.yaml")
		for _, line := range []int{lineOf(t, string(broken), "no operationId") - 1, lineOf(t, string(broken), "invoices/{invoiceId}:")} {
			if !hasProblemAt(ps, spec, line) {
				t.Errorf("no problem at %s:%d; got:\n%s", spec, line, ps)
			}
		}
	})
	t.Run("missing spec", func(t *testing.T) {
		t.Parallel()
		up := "http://" + closedAddr(t)
		text := gwConfig{APIs: []apiConfig{{Name: "ghost", Version: "v1", Spec: "missing.yaml", Upstream: up, BasePath: "/g"}}}.render()
		_, _, err := startErr(t, text, nil)
		if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
			t.Fatalf("missing spec: %v, want a problem naming missing.yaml", err)
		}
	})
}

// TestReloadReportsSpecProblems: a reload whose config is valid but whose
// spec is broken is refused with the spec's file:line.
func TestReloadReportsSpecProblems(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "billing-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{billingAPI(up.URL())}})
	specPath := filepath.Join(g.dir, "specs", "billing-v1.yaml")
	copyFile(t, filepath.Join("testdata", "broken-spec.yaml"), specPath)
	ps := problemsOf(t, g.srv.Reload(context.Background()))
	if !hasProblemAt(ps, specPath, 7) || !hasProblemAt(ps, specPath, 11) {
		t.Errorf("problems %q do not name %s lines 7 and 11", ps, specPath)
	}
	if s := status(t, g, "/billing/v1/invoices"); s != 200 {
		t.Errorf("old config not serving after a rejected reload: %d", s)
	}
}

// TestReloadReportsAllProblemsTogether: one reload names every problem, in
// the config and in its specs (STYLE.md: "all problems at once").
func TestReloadReportsAllProblemsTogether(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "billing-backend")
	cfg := gwConfig{APIs: []apiConfig{billingAPI(up.URL())}}
	g := startGateway(t, cfg)
	specPath := filepath.Join(g.dir, "specs", "billing-v1.yaml")
	copyFile(t, filepath.Join("testdata", "broken-spec.yaml"), specPath)
	bad := cfg.render() + "listen_typo: true\n"
	writeFileAtomic(t, g.cfgPath, bad)
	ps := problemsOf(t, g.srv.Reload(context.Background()))
	if !hasProblemAt(ps, g.cfgPath, lineOf(t, bad, "listen_typo")) {
		t.Errorf("problems %q do not name the unknown key", ps)
	}
	if !hasProblemAt(ps, specPath, 7) || !hasProblemAt(ps, specPath, 11) {
		t.Errorf("problems %q do not name the broken spec's lines 7 and 11", ps)
	}
}
