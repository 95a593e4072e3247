package server_test

// Cluster-mode limits: gateways sharing Redis (in-process and as separate
// `gatehouse serve` processes), Redis unreachable from the start (dead
// port) and cut mid-run (a TCP forwarder that is closed), under both
// failure policies.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedis returns the Redis of GATEHOUSE_TEST_REDIS and a fresh key
// prefix whose keys are deleted when the test ends.
func testRedis(t *testing.T) (url, prefix string) {
	t.Helper()
	url = os.Getenv("GATEHOUSE_TEST_REDIS")
	if url == "" {
		t.Skip("GATEHOUSE_TEST_REDIS not set (e.g. redis://127.0.0.1:6379/0): cluster rate-limit test skipped")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("GATEHOUSE_TEST_REDIS: %v", err)
	}
	client := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		t.Fatalf("GATEHOUSE_TEST_REDIS is set but unreachable: %v", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix = "gh-e2e-" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var cursor uint64
		for range 1000 {
			keys, next, err := client.Scan(ctx, cursor, prefix+"*", 500).Result()
			if err != nil {
				t.Errorf("clean up redis keys %s*: %v", prefix, err)
				return
			}
			if len(keys) > 0 {
				client.Del(ctx, keys...)
			}
			if cursor = next; cursor == 0 {
				return
			}
		}
	})
	return url, prefix
}

// forwarder is a TCP relay between the gateway and Redis that a test can
// cut (every connection closed, new ones refused) and restore.
type forwarder struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	f := &forwarder{t: t, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.start(ln)
	t.Cleanup(func() { f.cut(); f.wg.Wait() })
	return f
}

func (f *forwarder) start(ln net.Listener) {
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", f.target, 2*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns[c], f.conns[up] = struct{}{}, struct{}{}
			f.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			f.wg.Go(func() { pipe(up, c) })
			f.wg.Go(func() { pipe(c, up) })
		}
	})
}

// cut closes the listener and every relayed connection.
func (f *forwarder) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for c := range f.conns {
		c.Close()
	}
	clear(f.conns)
}

// restore listens on the same address again.
func (f *forwarder) restore() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", f.addr); err == nil {
			f.start(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("re-listen on %s: %v", f.addr, err)
}

func redisHostPort(t *testing.T, url string) string {
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return opt.Addr
}

// clusterGateway starts a gateway with an ip-limited orders API on redis.
func clusterGateway(t *testing.T, redisURL, prefix, policy string, replicas int, limits string) *gw {
	t.Helper()
	up := newEchoUpstream(t, "orders-backend")
	api := ordersAPI(up.URL())
	api.APIExtra = "    limits:\n" + limits
	l := map[string]string{"redis_failure": policy, "expected_replicas": fmt.Sprint(replicas)}
	if prefix != "" {
		l["redis_key_prefix"] = fmt.Sprintf("%q", prefix)
	}
	return startGateway(t, gwConfig{TrustedProxies: []string{"127.0.0.1"}, APIs: []apiConfig{api},
		Limits: l, Extra: fmt.Sprintf("redis: %q\n", redisURL)})
}

// TestRateLimitRedisShared: two gateways on one Redis share each budget
// exactly.
func TestRateLimitRedisShared(t *testing.T) {
	t.Parallel()
	url, prefix := testRedis(t)
	a := clusterGateway(t, url, prefix, "fail_closed", 2, "      - {per: ip, rate: 5/h}\n")
	b := clusterGateway(t, url, prefix, "fail_closed", 2, "      - {per: ip, rate: 5/h}\n")
	// The same API and rule on both: one key.
	order := []*gw{a, b, a, b, b}
	for i, g := range order {
		resp, body := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("203.0.113.80"))
		echoed(t, resp, body)
		_, st := rateHeaders(t, resp)
		if st["ip"].params["r"] != int64(4-i) {
			t.Fatalf("request %d: r=%d, want %d", i+1, st["ip"].params["r"], 4-i)
		}
	}
	for _, g := range []*gw{a, b} {
		resp, body := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("203.0.113.80"))
		assertRateLimited(t, resp, body)
	}
}

// TestQuotaRedisShared: with Redis, quotas count in Redis across gateways
// (which share a PostgreSQL store for their credentials).
func TestQuotaRedisShared(t *testing.T) {
	t.Parallel()
	url, prefix := testRedis(t)
	dsn := freshPostgres(t)
	up := newEchoUpstream(t, "orders-backend")
	cfg := quotaConfig(up.URL(), url, fmt.Sprintf("limits: {redis_key_prefix: %q}\n", prefix))
	cfg.Postgres = dsn
	a := startIdentityGateway(t, cfg)
	b := startIdentityGateway(t, cfg)
	key, _ := a.issueKey(t, "acme-billing", []string{"orders:read"}, 0)
	for i, g := range []*gw{a, b, a} {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", key); s != 200 {
			t.Fatalf("call %d within the quota of 3: %d", i+1, s)
		}
	}
	for _, g := range []*gw{a, b} {
		resp, body := g.call(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", key)
		assertProblem(t, resp, body, http.StatusTooManyRequests, "quota-exceeded")
		if q := g.quota(t, "consumer", "acme-billing"); q.Used != 3 || q.Remaining != 0 {
			t.Fatalf("quota %+v: want used 3, remaining 0", q)
		}
	}
}

// TestRateLimitRedisDown: Redis unreachable from the start (nothing listens
// on port 1) or cut mid-run, under each policy.
func TestRateLimitRedisDown(t *testing.T) {
	t.Parallel()
	t.Run("dead port fail_closed", func(t *testing.T) {
		t.Parallel()
		g := clusterGateway(t, "redis://"+closedAddr(t)+"/0", "", "fail_closed", 1, "      - {per: ip, rate: 100/h}\n")
		resp, body := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("203.0.113.90"))
		assertProblem(t, resp, body, http.StatusServiceUnavailable, "unavailable")
		if resp.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		m := g.scrape(t)
		if metricValue(m, "gatehouse_ratelimit_backend_degraded") != 1 || metricValue(m, "gatehouse_ratelimit_backend_failures_total") < 1 {
			t.Fatal("degraded metric not raised")
		}
		if !strings.Contains(g.logs.String(), "rate-limit backend unreachable") {
			t.Fatal("the outage was not logged")
		}
	})
	t.Run("dead port fail_open", func(t *testing.T) {
		t.Parallel()
		// 10 per hour across 2 expected replicas: this one admits 5.
		g := clusterGateway(t, "redis://"+closedAddr(t)+"/0", "", "fail_open", 2, "      - {per: ip, rate: 10/h}\n")
		for i := range 5 {
			resp, body := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("203.0.113.91"))
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i+1, resp.StatusCode, body)
			}
		}
		resp, body := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("203.0.113.91"))
		assertRateLimited(t, resp, body)
		if metricValue(g.scrape(t), "gatehouse_ratelimit_backend_degraded") != 1 {
			t.Fatal("degraded metric not raised")
		}
	})
	for _, policy := range []string{"fail_closed", "fail_open"} {
		t.Run("cut mid-run "+policy, func(t *testing.T) {
			t.Parallel()
			url, prefix := testRedis(t)
			fw := newForwarder(t, redisHostPort(t, url))
			g := clusterGateway(t, "redis://"+fw.addr+"/"+strings.TrimPrefix(dbOf(url), "/"), prefix, policy, 1, "      - {per: ip, rate: 1000/h}\n")
			get := func() int {
				resp, _ := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("203.0.113.92"))
				return resp.StatusCode
			}
			for i := range 3 {
				if s := get(); s != 200 {
					t.Fatalf("request %d with Redis up: %d", i+1, s)
				}
			}
			fw.cut()
			want := map[string]int{"fail_closed": 503, "fail_open": 200}[policy]
			eventually(t, 5*time.Second, "the policy applies after the cut", func() bool {
				return get() == want && metricValue(g.scrape(t), "gatehouse_ratelimit_backend_degraded") == 1
			})
			for i := range 5 {
				if s := get(); s != want {
					t.Fatalf("request %d with Redis cut: %d, want %d", i+1, s, want)
				}
			}
			fw.restore()
			eventually(t, 5*time.Second, "recovery once Redis is back", func() bool {
				return get() == 200 && metricValue(g.scrape(t), "gatehouse_ratelimit_backend_degraded") == 0
			})
		})
	}
}

// dbOf returns the database path of a redis URL ("/0").
func dbOf(url string) string {
	rest := url[strings.Index(url, "://")+3:]
	if i := strings.Index(rest, "/"); i >= 0 {
		return rest[i:]
	}
	return "/0"
}

// TestRateLimitThreeReplicas: three `gatehouse serve` processes share one
// Redis; a load well above the limit, spread across them, is admitted at
// the configured rate within ±2%.
func TestRateLimitThreeReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes")
	}
	url, prefix := testRedis(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("the go command is not on PATH")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gatehouse")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/gatehouse/gatehouse/cmd/gatehouse").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	up := newEchoUpstream(t, "orders-backend")
	const (
		rate     = 50 // per second
		burst    = 50
		duration = 6 * time.Second
		workers  = 6
		pace     = 40 * time.Millisecond // per worker: 150 req/s offered in total, 3× the rate
	)
	api := ordersAPI(up.URL())
	api.APIExtra = fmt.Sprintf("    limits:\n      - {per: api, rate: %d/s, burst: %d}\n", rate, burst)
	cfg := gwConfig{APIs: []apiConfig{api}, Limits: map[string]string{"redis_failure": "fail_closed", "expected_replicas": "3", "redis_timeout": "2s",
		"redis_key_prefix": fmt.Sprintf("%q", prefix)}, Extra: fmt.Sprintf("redis: %q\n", url)}
	var bases []string
	roots := x509.NewCertPool()
	for i := range 3 {
		base, pem := startServeProcess(t, bin, filepath.Join(dir, fmt.Sprintf("gw%d", i)), cfg.render())
		bases = append(bases, base)
		roots.AppendCertsFromPEM(pem)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots},
		MaxIdleConnsPerHost: workers, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	// Warm the connections (TLS handshakes) on a path outside the API.
	for _, b := range bases {
		if resp, err := client.Get(b + "/warmup"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	var admitted, limited, other atomic.Int64
	// Send and receive times (ns since start) of the first request and of
	// the last admitted one: Redis decided each somewhere in between.
	var firstSent, firstRecv atomic.Int64
	var mu sync.Mutex
	var lastSent, lastRecv int64
	start := time.Now()
	deadline := start.Add(duration)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			next := time.Now()
			for n := 0; ; n++ {
				now := time.Now()
				if !now.Before(deadline) {
					return
				}
				sent := now.Sub(start).Nanoseconds()
				first := firstSent.CompareAndSwap(0, max(sent, 1))
				resp, err := client.Get(bases[(w+n)%3] + "/orders/v1/orders")
				recv := time.Since(start).Nanoseconds()
				if first {
					firstRecv.Store(recv)
				}
				if err != nil {
					other.Add(1)
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case 200:
						admitted.Add(1)
						mu.Lock()
						if sent > lastSent {
							lastSent, lastRecv = sent, recv
						}
						mu.Unlock()
					case 429:
						limited.Add(1)
					default:
						other.Add(1)
					}
				}
				next = next.Add(pace)
				if d := time.Until(next); d > 0 {
					time.Sleep(d) // pacing the offered load, not synchronisation
				}
			}
		})
	}
	wg.Wait()
	// GCRA admits the burst at once and then one request per 1/rate: over
	// the span from the first decision to the last admitted one, exactly
	// burst + rate × span. The span is known to within the two requests'
	// round trips, which bound the allowance from both sides.
	spanLo := time.Duration(lastSent - firstRecv.Load())
	spanHi := time.Duration(lastRecv - firstSent.Load())
	lo, hi := float64(burst)+rate*spanLo.Seconds(), float64(burst)+rate*spanHi.Seconds()
	want := (lo + hi) / 2
	got := float64(admitted.Load())
	dev := (got - want) / want * 100
	t.Logf("3 replicas: admitted %d (limited %d, other %d) over %.3f-%.3fs; configured %d/s + burst %d allows %.1f-%.1f: deviation %+.2f%% from the middle",
		admitted.Load(), limited.Load(), other.Load(), spanLo.Seconds(), spanHi.Seconds(), rate, burst, lo, hi, dev)
	if other.Load() != 0 {
		t.Fatalf("%d requests failed or got another status", other.Load())
	}
	if limited.Load() == 0 {
		t.Fatal("the offered load never exceeded the limit: the test proves nothing")
	}
	if got < lo*0.98 || got > hi*1.02 {
		t.Fatalf("admitted %v, want %.1f-%.1f ± 2%% (deviation %+.2f%% from the middle)", got, lo, hi, dev)
	}
}

// startServeProcess runs `gatehouse serve` on cfgText in dir with fixed
// free ports and returns its HTTPS base URL and certificate once ready.
func startServeProcess(t *testing.T, bin, dir, cfgText string) (base string, certPEM []byte) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ports := make([]string, 2)
		for i := range ports {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ports[i] = ln.Addr().String()
			ln.Close()
		}
		text := strings.Replace(cfgText, "https: 127.0.0.1:0", "https: "+ports[0], 1)
		text = strings.Replace(text, "listen: 127.0.0.1:0", "listen: "+ports[1], 1)
		_, cfgPath := prepareDirAt(t, dir, text)
		var logs syncBuffer
		cmd := exec.Command(bin, "serve", "--config", cfgPath)
		cmd.Env = append(os.Environ(), "GH_TEST_ADMIN_TOKEN="+adminToken)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		ready := false
	wait:
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
			select {
			case err := <-exited:
				exited <- err
				break wait
			default:
			}
			resp, err := http.Get("http://" + ports[1] + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ready = true
					break wait
				}
			}
			time.Sleep(50 * time.Millisecond) // polling a child process's readiness
		}
		if ready {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("gatehouse %s log:\n%s", dir, logs.String())
				}
			})
			pem, err := os.ReadFile(filepath.Join(dir, "certs", "gateway.crt"))
			if err != nil {
				t.Fatal(err)
			}
			return "https://" + ports[0], pem
		}
		stop()
		if attempt == 3 || !strings.Contains(logs.String(), "address already in use") {
			t.Fatalf("gatehouse serve in %s not ready:\n%s", dir, logs.String())
		}
	}
}

// prepareDirAt is prepareDir in a given directory.
func prepareDirAt(t *testing.T, dir, cfg string) (string, string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "specs"), 0o755); err != nil {
		t.Fatal(err)
	}
	specs, _ := filepath.Glob(filepath.Join("testdata", "specs", "*.yaml"))
	for _, s := range specs {
		copyFile(t, s, filepath.Join(dir, "specs", filepath.Base(s)))
	}
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	writeFileAtomic(t, cfgPath, cfg)
	return dir, cfgPath
}
