package bench

// In-process benchmarks of one proxied request, Gatehouse against the bare
// proxy, for allocation counts and CPU profiles of the request path:
//
//	go test -run '^$' -bench Proxy -benchmem -cpuprofile cpu.out ./internal/bench/
//	go tool pprof -top -focus 'gateway|httputil' internal/bench/bench.test cpu.out
//
// The cross-process comparison that the targets are measured with is the
// gatehouse-bench command; these isolate the code under test from process
// and scheduling effects.

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devcert"
	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/metrics"
)

// newInProcessGateway compiles a Gateway for the bench API in front of
// upstream, the way the server does (LoadBytes, New, Compile, Swap).
func newInProcessGateway(tb testing.TB, upstream string) *gateway.Gateway {
	tb.Helper()
	dir := tb.TempDir()
	certPEM, keyPEM, err := devcert.Generate(time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	cert, key, spec := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "spec.yaml")
	for f, b := range map[string][]byte{cert: certPEM, key: keyPEM, spec: []byte(benchSpec)} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`version: 1
listen:
  https: 127.0.0.1:0
  tls: {cert: %q, key: %q}
admin: {listen: 127.0.0.1:0}
apis:
  - name: bench
    version: v1
    owner: {team: bench}
    spec: %q
    upstream: %s
    route: {base_path: /bench}
    policies:
      - {operation: "*", public: true}
  - name: ratelimited
    version: v1
    owner: {team: bench}
    spec: %q
    upstream: %s
    route: {base_path: /rl}
    policies:
      - {operation: "*", public: true}
    limits:
      - {per: ip, rate: 1000000000/s}
`, cert, key, spec, upstream, spec, upstream)
	loaded, err := config.LoadBytes(filepath.Join(dir, "gatehouse.yaml"), []byte(cfg), func(string) (string, bool) { return "", false })
	if err != nil {
		tb.Fatalf("load config: %v", err)
	}
	gw := gateway.New(metrics.New("bench"), slog.New(slog.DiscardHandler))
	rt, err := gw.Compile(loaded)
	if err != nil {
		tb.Fatalf("compile: %v", err)
	}
	gw.Swap(rt)
	return gw
}

// proxies returns the two handlers to compare, both in front of upstream.
func proxies(tb testing.TB, upstream string) map[string]http.Handler {
	u, err := url.Parse(upstream)
	if err != nil {
		tb.Fatal(err)
	}
	return map[string]http.Handler{
		"bare":                     NewBareProxy(u),
		"gatehouse":                newInProcessGateway(tb, upstream),
		"gatehouse-audit-buffered": withAudit(tb, newInProcessGateway(tb, upstream), audit.Buffered),
		"gatehouse-audit-durable":  withAudit(tb, newInProcessGateway(tb, upstream), audit.Durable),
	}
}

// withAudit turns on the audit trail (log only, no index) in mode.
func withAudit(tb testing.TB, g *gateway.Gateway, mode audit.Mode) *gateway.Gateway {
	skey, _, err := audit.GenerateKey("bench")
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := audit.Open(audit.Options{Dir: tb.TempDir(), Mode: mode, Signer: signer})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = w.Close() })
	g.SetAudit(w, nil)
	return g
}

// BenchmarkProxyListener drives each proxy through a real loopback listener
// and http.Server (gateway.NewServer), with 32 keep-alive client
// connections, as the command does.
func BenchmarkProxyListener(b *testing.B) {
	up := httptest.NewServer(upstreamHandler())
	defer up.Close()
	for _, name := range []string{"bare", "gatehouse"} {
		b.Run(name, func(b *testing.B) {
			h := proxies(b, up.URL)[name]
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := gateway.NewServer(h, defaultLimits())
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			getInParallel(b, "http://"+ln.Addr().String()+benchPath, "", "")
		})
	}
}

// BenchmarkProxyServeHTTP calls each handler's ServeHTTP directly (no
// inbound server or client), so allocs/op is the proxy's own per-request
// cost plus the upstream round trip, and the difference between the two
// is Gatehouse's pipeline.
func BenchmarkProxyServeHTTP(b *testing.B) {
	up := httptest.NewServer(upstreamHandler())
	defer up.Close()
	for _, name := range []string{"bare", "gatehouse", "gatehouse-audit-buffered", "gatehouse-audit-durable"} {
		b.Run(name, func(b *testing.B) {
			h := proxies(b, up.URL)[name]
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodGet, benchPath, nil)
					req.RemoteAddr = "127.0.0.1:40000"
					w := discardWriter{h: http.Header{}}
					h.ServeHTTP(&w, req)
					if w.status != http.StatusOK {
						b.Errorf("status %d", w.status)
						return
					}
				}
			})
		})
	}
}

// discardWriter is a minimal ResponseWriter (httptest.ResponseRecorder
// buffers and allocates more than a real server's writer does).
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}

// BenchmarkRateLimitServeHTTP is BenchmarkProxyServeHTTP's gatehouse case
// with and without a local per-IP rate limit on the route (never refusing):
// the difference is the limit stage's cost.
func BenchmarkRateLimitServeHTTP(b *testing.B) {
	up := httptest.NewServer(upstreamHandler())
	defer up.Close()
	h := newInProcessGateway(b, up.URL)
	for _, tc := range []struct{ name, path string }{{"off", benchPath}, {"local", "/rl" + benchOpPath}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodGet, tc.path, nil)
					req.RemoteAddr = "127.0.0.1:40000"
					w := discardWriter{h: http.Header{}}
					h.ServeHTTP(&w, req)
					if w.status != http.StatusOK {
						b.Errorf("status %d", w.status)
						return
					}
				}
			})
		})
	}
}

// getInParallel GETs url (with header hdr: val, if any) from 32 keep-alive
// client goroutines for the benchmark's b.N requests; each must be a 200.
func getInParallel(b *testing.B, url, hdr, val string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 32, MaxConnsPerHost: 32, DisableCompression: true}
	defer tr.CloseIdleConnections()
	b.ReportAllocs()
	b.SetParallelism(16) // 16 × GOMAXPROCS(2) = 32 client goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if hdr != "" {
			req.Header.Set(hdr, val)
		}
		for pb.Next() {
			resp, err := tr.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
