package limit

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// tcpProxy forwards 127.0.0.1:<port> to a target, and can be cut (listener
// and connections closed: Redis "goes away"), restored on the same port,
// or stalled (bytes swallowed: Redis "hangs", so only the timeout helps).
type tcpProxy struct {
	t      *testing.T
	target string
	addr   string

	stalled atomic.Bool
	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", p.target, time.Second)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, up) {
				return
			}
			p.wg.Go(func() { p.pipe(up, c) })
			p.wg.Go(func() { p.pipe(c, up) })
		}
	})
}

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil { // cut meanwhile
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst, dropping what it reads while stalled.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.stalled.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.t.Logf("proxy: %v", err)
			}
			return
		}
	}
}

// Cut closes the listener and every connection: new dials are refused and
// pooled connections fail.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Restore listens again on the same address.
func (p *tcpProxy) Restore() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port was just closed; it is ours again at once on Linux
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("re-listen on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// failures records OnFail and OnRecover calls.
type failures struct {
	fails    atomic.Int64
	recovers atomic.Int64
	mu       sync.Mutex
	last     error
}

func (f *failures) opts(policy FailurePolicy, replicas int) FallbackOptions {
	return FallbackOptions{
		Policy:           policy,
		ExpectedReplicas: replicas,
		RetryInterval:    50 * time.Millisecond,
		OnFail: func(err error) {
			f.fails.Add(1)
			f.mu.Lock()
			f.last = err
			f.mu.Unlock()
		},
		OnRecover: func() { f.recovers.Add(1) },
	}
}

// countingLimiter counts the decisions its inner limiter answered.
type countingLimiter struct {
	MultiLimiter
	ok atomic.Int64
}

func (c *countingLimiter) AllowMulti(ctx context.Context, checks []Check, results []Result) (bool, error) {
	ok, err := c.MultiLimiter.AllowMulti(ctx, checks, results)
	if err == nil {
		c.ok.Add(1)
	}
	return ok, err
}

// deadRedis is a Redis limiter pointed at a port nobody listens on (no
// Redis needed: nothing is ever written).
func deadRedis(t *testing.T) *Redis {
	t.Helper()
	opt := &redis.Options{Addr: "127.0.0.1:1"}
	ConfigureRedisOptions(opt, 0)
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	r, err := NewRedis(c, "gatehouse-test:dead:", RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFallbackDeadPortFailOpen: Redis unreachable from the start. Each rule
// is divided by the expected replicas (burst 9 over 3 replicas: 3 here),
// the alert hook fires, and no decision waits longer than the timeout.
func TestFallbackDeadPortFailOpen(t *testing.T) {
	var f failures
	fb, err := NewFallback(deadRedis(t), NewLocal(LocalOptions{}), f.opts(FailOpen, 3))
	if err != nil {
		t.Fatal(err)
	}
	rule := Rule{Rate: 30, Period: time.Hour, Burst: 9}
	var slowest time.Duration
	admitted := 0
	for range 10 {
		start := time.Now()
		res, err := fb.Allow(ctx, "k", rule)
		slowest = max(slowest, time.Since(start))
		if err != nil {
			t.Fatalf("fail_open returned an error: %v", err)
		}
		if res.Allowed {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("admitted %d, want 3 (burst 9 / 3 replicas)", admitted)
	}
	if !fb.Degraded() || f.fails.Load() == 0 {
		t.Fatalf("degraded %v, OnFail calls %d: the outage must be visible", fb.Degraded(), f.fails.Load())
	}
	f.mu.Lock()
	last := f.last
	f.mu.Unlock()
	if last == nil || !strings.Contains(last.Error(), "redis") {
		t.Fatalf("OnFail cause %v, want the redis error", last)
	}
	if slowest > 500*time.Millisecond {
		t.Fatalf("slowest decision %v: a dead Redis must fail fast", slowest)
	}
	t.Logf("dead port: slowest decision %v, OnFail called %d times for 10 requests", slowest, f.fails.Load())
}

func TestFallbackDeadPortFailClosed(t *testing.T) {
	var f failures
	fb, err := NewFallback(deadRedis(t), nil, f.opts(FailClosed, 3))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res, err := fb.Allow(ctx, "k", Rule{Rate: 10, Period: time.Second, Burst: 5})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		if res.Allowed {
			t.Fatal("fail_closed allowed a request")
		}
	}
	if f.fails.Load() == 0 {
		t.Fatal("OnFail never called")
	}
}

// TestFallbackProxyCut: Redis reachable through a proxy, then the proxy is
// cut mid-run (fallback answers), then restored (the primary answers again
// without a restart), for both policies.
func TestFallbackProxyCut(t *testing.T) {
	for _, policy := range []FailurePolicy{FailOpen, FailClosed} {
		t.Run(policy.String(), func(t *testing.T) {
			opt, _ := redis.ParseURL(redisURL(t))
			proxy := startProxy(t, opt.Addr)
			direct := newRedisClient(t, "", testTimeout)
			prefix := testPrefix(t)
			r, err := NewRedis(newRedisClient(t, proxy.addr, testTimeout), prefix, RedisOptions{Timeout: testTimeout})
			if err != nil {
				t.Fatal(err)
			}
			primary := &countingLimiter{MultiLimiter: r}
			var f failures
			fb, err := NewFallback(primary, NewLocal(LocalOptions{}), f.opts(policy, 2))
			if err != nil {
				t.Fatal(err)
			}
			rule := Rule{Rate: 1000, Period: time.Hour, Burst: 1000}

			// Healthy: decisions go to Redis.
			for range 5 {
				if res, err := fb.Allow(ctx, "k", rule); err != nil || !res.Allowed {
					t.Fatalf("healthy: %+v %v", res, err)
				}
			}
			if primary.ok.Load() != 5 || direct.Exists(ctx, prefix+"k").Val() != 1 {
				t.Fatalf("healthy decisions did not reach Redis (%d answered)", primary.ok.Load())
			}

			// Cut mid-run.
			proxy.Cut()
			for i := range 5 {
				res, err := fb.Allow(ctx, "k", rule)
				switch policy {
				case FailOpen:
					if err != nil || !res.Allowed {
						t.Fatalf("cut, request %d: %+v %v, want the local limiter to admit", i, res, err)
					}
				case FailClosed:
					if !errors.Is(err, ErrUnavailable) || res.Allowed {
						t.Fatalf("cut, request %d: %+v %v, want ErrUnavailable", i, res, err)
					}
				}
			}
			if !fb.Degraded() || f.fails.Load() == 0 {
				t.Fatal("cut not noticed")
			}

			// Restore: within a bounded time a probe reaches Redis again.
			proxy.Restore()
			before := primary.ok.Load()
			deadline := time.Now().Add(5 * time.Second)
			for fb.Degraded() && time.Now().Before(deadline) {
				fb.Allow(ctx, "k", rule)
				time.Sleep(10 * time.Millisecond)
			}
			if fb.Degraded() || primary.ok.Load() == before || f.recovers.Load() != 1 {
				t.Fatalf("no recovery within 5s: degraded %v, primary answers %d→%d, recovers %d",
					fb.Degraded(), before, primary.ok.Load(), f.recovers.Load())
			}
			res, err := fb.Allow(ctx, "k", rule)
			if err != nil || !res.Allowed {
				t.Fatalf("after recovery: %+v %v", res, err)
			}
			// Redis's own count continued from its state before the cut.
			if used := 1000 - res.Remaining; used < 7 {
				t.Fatalf("Redis shows %d used, want at least the 5 healthy + recovery requests", used)
			}
		})
	}
}

// TestFallbackProxyStall: Redis hangs (the proxy swallows bytes). The
// request that probes waits about the timeout, requests in between do not
// wait at all, and the policy answers.
func TestFallbackProxyStall(t *testing.T) {
	opt, _ := redis.ParseURL(redisURL(t))
	proxy := startProxy(t, opt.Addr)
	r, err := NewRedis(newRedisClient(t, proxy.addr, 0), testPrefix(t), RedisOptions{}) // production timeout
	if err != nil {
		t.Fatal(err)
	}
	var f failures
	o := f.opts(FailOpen, 1)
	o.RetryInterval = time.Second
	fb, err := NewFallback(r, NewLocal(LocalOptions{}), o)
	if err != nil {
		t.Fatal(err)
	}
	rule := Rule{Rate: 1000, Period: time.Hour, Burst: 1000}
	// Healthy first (a loaded machine may time out once; the next probe
	// comes after RetryInterval).
	for i := 0; i < 5; i++ {
		if _, err := fb.Allow(ctx, "k", rule); err != nil {
			t.Fatal(err)
		}
		if !fb.Degraded() {
			break
		}
		time.Sleep(o.RetryInterval)
	}
	if fb.Degraded() {
		t.Fatal("Redis through the proxy never answered in time")
	}
	proxy.stalled.Store(true)
	start := time.Now()
	res, err := fb.Allow(ctx, "k", rule)
	first := time.Since(start)
	if err != nil || !res.Allowed || !fb.Degraded() {
		t.Fatalf("stalled: %+v %v degraded=%v", res, err, fb.Degraded())
	}
	if first < 40*time.Millisecond || first > 1500*time.Millisecond {
		t.Fatalf("the request that met the stall took %v, want about the 50ms timeout", first)
	}
	start = time.Now()
	for range 20 {
		fb.Allow(ctx, "k", rule)
	}
	if rest := time.Since(start); rest > 200*time.Millisecond {
		t.Fatalf("20 requests during the outage took %v: they must skip the stalled primary", rest)
	}
	t.Logf("stall: probing request %v, 20 more in %v", first, time.Since(start))
	proxy.stalled.Store(false)
}

func TestNewFallbackValidation(t *testing.T) {
	l := NewLocal(LocalOptions{})
	if _, err := NewFallback(l, nil, FallbackOptions{Policy: FailOpen}); err == nil {
		t.Error("fail_open without a local limiter accepted")
	}
	if _, err := NewFallback(l, l, FallbackOptions{}); err == nil {
		t.Error("zero policy accepted")
	}
	for in, want := range map[string]FailurePolicy{"fail_open": FailOpen, "fail_closed": FailClosed} {
		if got, err := ParseFailurePolicy(in); err != nil || got != want {
			t.Errorf("ParseFailurePolicy(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseFailurePolicy("open"); err == nil {
		t.Error(`ParseFailurePolicy("open") accepted`)
	}
}

// TestFallbackShare: the per-replica share rounds up and never reaches 0.
func TestFallbackShare(t *testing.T) {
	fb := &Fallback{replicas: 3}
	for _, tt := range []struct{ in, want Rule }{
		{Rule{Rate: 100, Period: time.Second, Burst: 50}, Rule{Rate: 34, Period: time.Second, Burst: 17}},
		{Rule{Rate: 1, Period: time.Second, Burst: 0}, Rule{Rate: 1, Period: time.Second, Burst: 1}},
		{Rule{Rate: 3, Period: time.Minute, Burst: 3}, Rule{Rate: 1, Period: time.Minute, Burst: 1}},
	} {
		if got := fb.share(tt.in); got != tt.want {
			t.Errorf("share(%+v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestFallbackPassesThroughInvalidRule: a bad rule is not an outage.
func TestFallbackPassesThroughInvalidRule(t *testing.T) {
	var f failures
	fb, _ := NewFallback(NewLocal(LocalOptions{}), NewLocal(LocalOptions{}), f.opts(FailOpen, 1))
	if _, err := fb.Allow(ctx, "k", Rule{}); !errors.Is(err, ErrInvalidRule) {
		t.Fatalf("err = %v, want ErrInvalidRule", err)
	}
	if fb.Degraded() || f.fails.Load() != 0 {
		t.Fatal("an invalid rule tripped the failure policy")
	}
}
