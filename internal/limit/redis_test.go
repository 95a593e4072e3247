package limit

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// go-redis logs every refused dial; the failure tests provoke hundreds.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedisLog{}) }

// redisURL returns GATEHOUSE_TEST_REDIS or skips the test.
func redisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("GATEHOUSE_TEST_REDIS")
	if u == "" {
		t.Skip("GATEHOUSE_TEST_REDIS not set (e.g. redis://127.0.0.1:6379/0): Redis limiter test skipped")
	}
	return u
}

// testTimeout is the per-call timeout of tests that check behaviour, not
// the timeout itself: a loaded 2-core CI machine can stall Redis for more
// than the production 50 ms (TestFallbackProxyStall covers that path).
const testTimeout = 2 * time.Second

// newRedisClient returns a client configured as the limiter wants it (via
// ConfigureRedisOptions with timeout), closed when the test ends. addr, if
// not empty, replaces the URL's host (a dead port, a proxy).
func newRedisClient(t testing.TB, addr string, timeout time.Duration) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redisURL(t))
	if err != nil {
		t.Fatalf("GATEHOUSE_TEST_REDIS: %v", err)
	}
	if addr != "" {
		opt.Addr = addr
	}
	ConfigureRedisOptions(opt, timeout)
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a random key prefix and deletes every key under it
// when the test ends.
func testPrefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 8)
	crand.Read(b)
	prefix := "gatehouse-test:limit:" + hex.EncodeToString(b) + ":"
	url := redisURL(t)
	t.Cleanup(func() {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return
		}
		c := redis.NewClient(opt)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var keys []string
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				t.Logf("cleanup of %d test keys: %v", len(keys), err)
			}
		}
	})
	return prefix
}

func newTestRedis(t testing.TB) (*Redis, *redis.Client, string) {
	t.Helper()
	c := newRedisClient(t, "", testTimeout)
	prefix := testPrefix(t)
	r, err := NewRedis(c, prefix, RedisOptions{Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at GATEHOUSE_TEST_REDIS unreachable: %v", err)
	}
	return r, c, prefix
}

// TestRedisBurstAndRetry: the shared limiter answers like the local one:
// the burst at once, then a denial whose RetryAfter is one interval (less
// the few ms the calls took), and a key TTL equal to the time the state
// matters.
func TestRedisBurstAndRetry(t *testing.T) {
	r, c, prefix := newTestRedis(t)
	rule := Rule{Rate: 10, Period: time.Minute, Burst: 5} // T = 6 s
	for i := range 5 {
		res, err := r.Allow(ctx, "k", rule)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed || res.Remaining != 4-i || res.Limit != 5 {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, res, 4-i)
		}
		if want := time.Duration(i+1) * 6 * time.Second; res.ResetAfter > want || res.ResetAfter < want-time.Second {
			t.Fatalf("request %d: ResetAfter %v, want just under %v", i, res.ResetAfter, want)
		}
	}
	res, err := r.Allow(ctx, "k", rule)
	if err != nil {
		t.Fatal(err)
	}
	if res.Allowed || res.Remaining != 0 {
		t.Fatalf("6th request: %+v, want denied", res)
	}
	if res.RetryAfter > 6*time.Second || res.RetryAfter < 5*time.Second {
		t.Fatalf("RetryAfter %v, want just under 6s", res.RetryAfter)
	}
	val, err := c.Get(ctx, prefix+"k").Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strconv.ParseInt(val, 10, 64); err != nil {
		t.Fatalf("stored TAT %q is not an integer (precision lost?)", val)
	}
	ttl, err := c.PTTL(ctx, prefix+"k").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl > 30*time.Second || ttl < 29*time.Second {
		t.Fatalf("key TTL %v, want about 30s (5 intervals: when the TAT passes)", ttl)
	}
}

// TestRedisSpacing: burst 1 at 20/s on the real clock: a second request
// right away is denied, one after the interval passes.
func TestRedisSpacing(t *testing.T) {
	r, _, _ := newTestRedis(t)
	rule := Rule{Rate: 20, Period: time.Second} // T = 50 ms
	if res, _ := r.Allow(ctx, "k", rule); !res.Allowed {
		t.Fatalf("first: %+v", res)
	}
	res, _ := r.Allow(ctx, "k", rule)
	if res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > 50*time.Millisecond {
		t.Fatalf("second at once: %+v, want denied with RetryAfter in (0, 50ms]", res)
	}
	time.Sleep(res.RetryAfter)
	if res, _ := r.Allow(ctx, "k", rule); !res.Allowed {
		t.Fatalf("after RetryAfter: %+v, want allowed", res)
	}
}

// TestRedisConcurrentExact: three clients (three "replicas") and many
// goroutines racing for one key get exactly the burst.
func TestRedisConcurrentExact(t *testing.T) {
	_, _, prefix := newTestRedis(t)
	var lims []*Redis
	for range 3 {
		r, err := NewRedis(newRedisClient(t, "", testTimeout), prefix, RedisOptions{Timeout: testTimeout})
		if err != nil {
			t.Fatal(err)
		}
		lims = append(lims, r)
	}
	rule := Rule{Rate: 1, Period: time.Hour, Burst: 100}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			for range 25 {
				res, err := lims[i%3].Allow(ctx, "shared", rule)
				if err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got != 100 {
		t.Fatalf("admitted %d of 300, want exactly the burst 100", got)
	}
}

func TestRedisMultiDenialConsumesNothing(t *testing.T) {
	r, _, _ := newTestRedis(t)
	testMultiDenialConsumesNothing(t, r)
}

func TestRedisMultiSameKeyTwice(t *testing.T) {
	r, _, _ := newTestRedis(t)
	c := Check{Key: "k", Rule: Rule{Rate: 1, Period: time.Hour, Burst: 3}}
	v, err := AllowAll(ctx, r, []Check{c, c})
	if err != nil || !v.Allowed || v.Results[1].Remaining != 1 {
		t.Fatalf("first pair: %+v %v, want allowed with 1 left", v, err)
	}
	v, _ = AllowAll(ctx, r, []Check{c, c})
	if v.Allowed {
		t.Fatalf("second pair allowed with one unit left: %+v", v)
	}
	if res, _ := r.Allow(ctx, "k", c.Rule); !res.Allowed || res.Remaining != 0 {
		t.Fatalf("the unit left must still be there: %+v", res)
	}
}

// TestRedisDecisionsShareAPipeline: decisions that arrive while a pipeline
// is in flight go out together in the next one, and each gets its own
// exact answer.
func TestRedisDecisionsShareAPipeline(t *testing.T) {
	r, _, _ := newTestRedis(t)
	b := r.batch
	if b == nil {
		t.Fatal("a go-redis client got no batcher")
	}
	b.mu.Lock()
	b.busy = true // as if a pipeline were in flight
	b.mu.Unlock()
	rule := Rule{Rate: 1, Period: time.Hour, Burst: 4}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			res, err := r.Allow(ctx, "together", rule)
			if err != nil {
				t.Error(err)
			} else if res.Allowed {
				admitted.Add(1)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.pending)
		if n == 10 {
			// The in-flight pipeline ends: the lead passes to a waiter.
			next := b.pending[0]
			next.lead = true
			next.done <- struct{}{}
		}
		b.mu.Unlock()
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d decisions queued", n)
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	if p, d := b.pipelines.Load(), b.decisions.Load(); p != 1 || d != 10 {
		t.Errorf("%d pipelines for %d decisions, want 1 for 10", p, d)
	}
	if got := admitted.Load(); got != 4 {
		t.Errorf("admitted %d of 10, want the burst 4", got)
	}
}

// TestRedisScriptNotCached: with a script Redis has never seen, the first
// call falls back from EVALSHA to EVAL (NOSCRIPT), and later calls find it
// cached.
func TestRedisScriptNotCached(t *testing.T) {
	r, c, _ := newTestRedis(t)
	b := make([]byte, 8)
	crand.Read(b)
	r.script = redis.NewScript(gcraLua + "-- " + hex.EncodeToString(b) + "\n")
	exists, err := c.ScriptExists(ctx, r.script.Hash()).Result()
	if err != nil || exists[0] {
		t.Fatalf("fresh script already cached? %v %v", exists, err)
	}
	if res, err := r.Allow(ctx, "k", Rule{Rate: 1, Period: time.Second}); err != nil || !res.Allowed {
		t.Fatalf("first call: %+v %v", res, err)
	}
	exists, err = c.ScriptExists(ctx, r.script.Hash()).Result()
	if err != nil || !exists[0] {
		t.Fatalf("script not cached after EVAL: %v %v", exists, err)
	}
	if res, err := r.Allow(ctx, "k", Rule{Rate: 1, Period: time.Second}); err != nil || res.Allowed {
		t.Fatalf("second call: %+v %v, want denied", res, err)
	}
}

func TestRedisInvalidRuleAndClientChecks(t *testing.T) {
	r, _, _ := newTestRedis(t)
	if _, err := r.Allow(ctx, "k", Rule{Rate: 0, Period: time.Second}); !errors.Is(err, ErrInvalidRule) {
		t.Fatalf("rate 0: %v, want ErrInvalidRule", err)
	}
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer plain.Close()
	if _, err := NewRedis(plain, "p:", RedisOptions{}); err == nil || !strings.Contains(err.Error(), "ContextTimeoutEnabled") {
		t.Fatalf("client without ContextTimeoutEnabled: %v, want an error naming it", err)
	}
}

// BenchmarkRedisAllow: one decision round trip on loopback.
func BenchmarkRedisAllow(b *testing.B) {
	r, _, _ := newTestRedis(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Allow(ctx, "k", benchRule); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisAllowParallel: concurrent decisions over the pool.
func BenchmarkRedisAllowParallel(b *testing.B) {
	r, _, _ := newTestRedis(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Allow(ctx, "k", benchRule); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
