package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/gateway"
)

// The upstream and the bare proxy run as child processes: the harness
// re-executes its own binary (the gatehouse-bench command, or the test
// binary in bench_test.go) with RoleEnv set, and the child serves its role.
//
// Why separate processes, on a 2-core machine? Every component competes for
// the same two cores whatever we do, but inside one Go process they would
// also share one scheduler, one heap and one garbage collector: a GC cycle
// caused by the built-in load generator's allocations would stop the
// upstream's goroutines too, and the upstream's run queue would be ordered
// behind load-generator goroutines. Gatehouse necessarily runs in its own
// process, so the bare proxy must as well, and the upstream is one process
// shared by both sides. Then the only thing that differs between a bare run
// and a Gatehouse run is the proxy process in the middle, and the OS
// scheduler treats the two alike. It also lets us read each proxy's CPU time
// from /proc, which is the cleanest per-request cost on a shared machine.
//
// Nothing is pinned to a core. With three busy processes on two cores,
// pinning the proxy to one core would let the load generator and upstream
// on the other set the pace and hide the proxy's cost; unpinned, a proxy
// that needs more CPU per request leaves less for the others, and the
// throughput shows it.
const (
	// RoleEnv selects a child role: "upstream" or "bare".
	RoleEnv = "GATEHOUSE_BENCH_ROLE"
	// envUpstream is the bare proxy's upstream URL.
	envUpstream = "GATEHOUSE_BENCH_UPSTREAM"
	// envCert and envKey are the bare proxy's TLS certificate and key files.
	envCert = "GATEHOUSE_BENCH_CERT"
	envKey  = "GATEHOUSE_BENCH_KEY"
)

// UpstreamBody is the fixed JSON document the upstream returns (~200 bytes):
// small, so the benchmark measures proxy overhead rather than copying.
const UpstreamBody = `{"id":"42","name":"benchmark item","description":"a fixed response for gatehouse-bench",` +
	`"price":{"amount":1999,"currency":"EUR"},"tags":["bench","fixed","json"],"in_stock":true,"updated":"2026-01-01T00:00:00Z"}`

// RunRoleFromEnv serves a child role and exits the process if RoleEnv is
// set; otherwise it returns at once. Call it first thing in main (and in
// TestMain of packages that run the harness).
func RunRoleFromEnv() {
	role := os.Getenv(RoleEnv)
	if role == "" {
		return
	}
	if err := serveRole(role); err != nil {
		fmt.Fprintf(os.Stderr, "gatehouse-bench %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveRole(role string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The parent holds our stdin open; EOF means it is gone (even if it was
	// killed without a chance to clean up), so we go too.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	switch role {
	case "upstream":
		return serveUpstream(ctx)
	case "bare":
		return serveBare(ctx, os.Getenv(envUpstream), os.Getenv(envCert), os.Getenv(envKey))
	case "naive-waf":
		return serveNaiveWAF(ctx, os.Getenv(envUpstream))
	default:
		return fmt.Errorf("unknown role %q", role)
	}
}

// upstreamHandler answers every request with UpstreamBody. The header
// values are built once so the upstream costs as little as possible.
func upstreamHandler() http.Handler {
	body := []byte(UpstreamBody)
	ct := []string{"application/json"}
	cl := []string{strconv.Itoa(len(body))}
	large := []byte(LargeBody)
	largeCL := []string{strconv.Itoa(len(large))}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = ct
		if strings.Contains(r.URL.Path, "/large/") {
			// The filter target's ~2 KB body (hygiene.go).
			h["Content-Length"] = largeCL
			_, _ = w.Write(large)
			return
		}
		h["Content-Length"] = cl
		_, _ = w.Write(body)
	})
}

func serveUpstream(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: upstreamHandler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 90 * time.Second}
	fmt.Printf("ready http=%s\n", ln.Addr())
	return serveUntil(ctx, srv, ln, false)
}

// defaultLimits are Gatehouse's defaults, so the bare proxy's http.Server
// has the same timeouts and header limit as Gatehouse's.
func defaultLimits() config.Limits {
	return config.Limits{
		MaxHeaderBytes:          config.DefaultMaxHeaderBytes,
		MaxBodyBytes:            config.DefaultMaxBodyBytes,
		ReadHeaderTimeout:       config.Duration(config.DefaultReadHeaderTimeout),
		ReadTimeout:             config.Duration(config.DefaultReadTimeout),
		WriteTimeout:            config.Duration(config.DefaultWriteTimeout),
		IdleTimeout:             config.Duration(config.DefaultIdleTimeout),
		UpstreamConnectTimeout:  config.Duration(config.DefaultUpstreamConnectTimeout),
		UpstreamResponseTimeout: config.Duration(config.DefaultUpstreamResponseTimeout),
		UpstreamMaxIdlePerHost:  config.DefaultUpstreamMaxIdlePerHost,
	}
}

// NewBareProxy is the baseline: a plain httputil.ReverseProxy on net/http's
// Transport with Gatehouse's default timeouts and pool size
// (gateway.NewTransport, which is also Gatehouse's fallback for what its own
// synchronous HTTP/1.1 pool, internal/h1, does not carry). Besides pointing
// the URL at the upstream it sets X-Forwarded-*, as any real proxy (and
// Gatehouse) does.
//
// It also gets a BufferPool. Without one, ReverseProxy allocates a fresh
// 32 KiB copy buffer per response; Gatehouse pools them, and a baseline
// that pays for an allocation any real deployment would remove flatters
// Gatehouse (measured here in-process: 45 KB instead of 12 KB allocated
// and ~20% more time per request on the bare side).
func NewBareProxy(upstream *url.URL) *httputil.ReverseProxy {
	l := defaultLimits()
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		Transport:  gateway.NewTransport(l.UpstreamConnectTimeout.D(), l.UpstreamResponseTimeout.D(), l.UpstreamMaxIdlePerHost),
		BufferPool: &copyBufferPool{},
	}
}

// copyBufferPool recycles ReverseProxy's 32 KiB copy buffers.
type copyBufferPool struct{ p sync.Pool }

func (b *copyBufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *copyBufferPool) Put(buf []byte) { b.p.Put(&buf) }

func serveBare(ctx context.Context, upstream, certFile, keyFile string) error {
	target, err := url.Parse(upstream)
	if err != nil || target.Host == "" {
		return fmt.Errorf("%s=%q is not an upstream URL", envUpstream, upstream)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	proxy := NewBareProxy(target)
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		plainLn.Close()
		return err
	}
	// gateway.NewServer: the same http.Server settings Gatehouse serves with.
	plain := gateway.NewServer(proxy, defaultLimits())
	secure := gateway.NewServer(proxy, defaultLimits())
	// Like Gatehouse: TLS 1.2 floor, h2 and http/1.1 offered (ServeTLS adds
	// h2), so TLS handshakes and record handling cost the same on both.
	secure.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	fmt.Printf("ready http=%s https=%s\n", plainLn.Addr(), tlsLn.Addr())

	errc := make(chan error, 1)
	go func() { errc <- serveUntil(ctx, secure, tlsLn, true) }()
	err = serveUntil(ctx, plain, plainLn, false)
	return errors.Join(err, <-errc)
}

// serveUntil serves until ctx ends, then closes the server at once: a
// benchmark child has nothing in flight worth waiting for.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, useTLS bool) error {
	errc := make(chan error, 1)
	go func() {
		if useTLS {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case <-ctx.Done():
		_ = srv.Close()
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
