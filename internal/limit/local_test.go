package limit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var ctx = context.Background()

// contains reports whether l tracks key (test-only peek into the shard).
func (l *Local) contains(key string) bool {
	s := &l.shards[l.shardIndex(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.tats[key]
	return ok
}

// TestLocalConcurrentExact: on a frozen clock, goroutines racing for one
// key get exactly the burst, no more, no less.
func TestLocalConcurrentExact(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now})
	rule := Rule{Rate: 1, Period: time.Hour, Burst: 1000}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				res, err := l.Allow(ctx, "shared", rule)
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
	if got := admitted.Load(); got != 1000 {
		t.Fatalf("admitted %d of 4000, want exactly the burst 1000", got)
	}
}

// TestLocalSteadyRateRealClock: burst then steady on the real clock, for a
// bounded 300 ms: admitted = burst + span/interval, where the span runs
// from the first decision to the last (each known to lie between the
// clock readings around its call). The burst (500 ms of budget) outlasts
// the test, so a scheduling stall of the test itself cannot lose budget.
func TestLocalSteadyRateRealClock(t *testing.T) {
	l := NewLocal(LocalOptions{})
	const interval = 10 * time.Millisecond
	rule := Rule{Rate: 100, Period: time.Second, Burst: 50}
	var firstBefore, firstAfter, lastBefore, lastAfter time.Time
	admitted := 0
	for i := 0; i < 1_000_000; i++ {
		before := time.Now()
		if i > 0 && before.Sub(firstBefore) >= 300*time.Millisecond {
			break
		}
		res, _ := l.Allow(ctx, "k", rule)
		after := time.Now()
		if i == 0 {
			firstBefore, firstAfter = before, after
		}
		lastBefore, lastAfter = before, after
		if res.Allowed {
			admitted++
		}
		if i%64 == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	lo := 50 + int(lastBefore.Sub(firstAfter)/interval)
	hi := 50 + int(lastAfter.Sub(firstBefore)/interval)
	if admitted < lo || admitted > hi {
		t.Fatalf("admitted %d over %v, want %d..%d", admitted, lastAfter.Sub(firstBefore), lo, hi)
	}
}

// TestLocalEvictedIdleKeyIsFresh proves eviction of an idle key loses
// nothing: its results afterwards equal those of a key never seen and of
// an idle key that was not evicted.
func TestLocalEvictedIdleKeyIsFresh(t *testing.T) {
	clk := newFakeClock()
	rule := Rule{Rate: 10, Period: time.Second, Burst: 5}
	evicting := NewLocal(LocalOptions{Shards: 1, MaxKeys: 8, Now: clk.Now})
	keeping := NewLocal(LocalOptions{Shards: 1, MaxKeys: 1024, Now: clk.Now})
	for _, l := range []*Local{evicting, keeping} {
		for range 3 {
			l.Allow(ctx, "idle", rule)
		}
	}
	clk.Advance(time.Second) // TAT (300 ms) now in the past
	for i := range 20 {      // fill the small shard so it must make room
		evicting.Allow(ctx, "filler"+strconv.Itoa(i), rule)
	}
	if evicting.contains("idle") {
		t.Fatal("idle key was not evicted")
	}
	if !keeping.contains("idle") {
		t.Fatal("control limiter lost the idle key")
	}
	fresh := NewLocal(LocalOptions{Now: clk.Now})
	for i := range 7 {
		a, _ := evicting.Allow(ctx, "idle", rule)
		b, _ := keeping.Allow(ctx, "idle", rule)
		c, _ := fresh.Allow(ctx, "never-seen", rule)
		if a != b || b != c {
			t.Fatalf("request %d: evicted %+v, kept %+v, fresh %+v: must be equal", i, a, b, c)
		}
	}
}

// TestLocalEvictsOldestTATFirst: when a shard is full of live keys, the
// key whose TAT is furthest ahead (the most state) survives a flood.
func TestLocalEvictsOldestTATFirst(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Shards: 1, MaxKeys: 64, Now: clk.Now})
	hot := Rule{Rate: 1, Period: time.Hour, Burst: 100}
	for range 50 {
		l.Allow(ctx, "hot", hot) // TAT 50 h ahead
	}
	flood := Rule{Rate: 1, Period: time.Second, Burst: 1} // TAT 1 s ahead
	for i := range 10_000 {
		clk.Advance(time.Microsecond) // every flood key stays live
		l.Allow(ctx, "flood"+strconv.Itoa(i), flood)
	}
	if !l.contains("hot") {
		t.Fatal("the key with the most state was evicted")
	}
	if l.Len() > l.MaxKeys() {
		t.Fatalf("Len %d > MaxKeys %d", l.Len(), l.MaxKeys())
	}
	if l.Evicted() == 0 {
		t.Fatal("a flood of live keys evicted none")
	}
	res, _ := l.Allow(ctx, "hot", hot)
	if res.Remaining != 49 {
		t.Fatalf("hot key remaining %d, want 49: its state must be intact", res.Remaining)
	}
	// The newest flood keys survive too: eviction took the oldest TATs.
	if !l.contains("flood9999") {
		t.Fatal("newest key evicted before older ones")
	}
}

// TestLocalFloodMemoryBounded: a million distinct keys (a spoofed-IP
// flood), all live, keep the map at its cap and the heap near flat.
func TestLocalFloodMemoryBounded(t *testing.T) {
	const maxKeys = 1 << 16
	l := NewLocal(LocalOptions{MaxKeys: maxKeys})
	rule := Rule{Rate: 1, Period: time.Minute, Burst: 1} // every key stays live
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	buf := make([]byte, 0, 32)
	n := 1_000_000
	if testing.Short() {
		n = 200_000
	}
	deadline := time.Now().Add(40 * time.Second)
	for i := 0; i < n; i++ {
		if i%4096 == 0 && time.Now().After(deadline) {
			t.Fatalf("flood too slow: %d keys in 40 s", i)
		}
		buf = strconv.AppendUint(append(buf[:0], "ip:"...), uint64(i)*2654435761, 16)
		if res, _ := l.Allow(ctx, string(buf), rule); !res.Allowed {
			t.Fatalf("distinct key %d denied", i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := l.Len(); got > l.MaxKeys() {
		t.Fatalf("tracking %d keys, cap %d", got, l.MaxKeys())
	}
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d distinct keys: %d tracked (cap %d), %d live evictions, heap +%.1f MiB (%.0f B/key)",
		n, l.Len(), l.MaxKeys(), l.Evicted(), float64(growth)/(1<<20), float64(growth)/float64(l.MaxKeys()))
	if growth > 32<<20 {
		t.Fatalf("heap grew %d MiB for a %d-key cap", growth>>20, maxKeys)
	}
	runtime.KeepAlive(l)
}

func TestSelectKth(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 10, 100, 1000} {
		for _, spread := range []int64{1, 3, 1 << 40} { // many ties, some, none
			a := make([]int64, n)
			for i := range a {
				a[i] = r.Int64N(spread)
			}
			sorted := slices.Clone(a)
			slices.Sort(sorted)
			for _, k := range []int{0, n / 2, n - 1} {
				b := slices.Clone(a)
				if got := selectKth(b, k); got != sorted[k] {
					t.Fatalf("n=%d spread=%d k=%d: got %d want %d", n, spread, k, got, sorted[k])
				}
			}
		}
	}
}

// TestLocalMultiDenialConsumesNothing: limit B denies, limit A's budget is
// untouched; then both pass and both are consumed.
func TestLocalMultiDenialConsumesNothing(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now})
	testMultiDenialConsumesNothing(t, l)
}

// testMultiDenialConsumesNothing runs against any MultiLimiter whose keys
// start fresh (Local, Redis with a fresh prefix).
func testMultiDenialConsumesNothing(t *testing.T, lim MultiLimiter) {
	t.Helper()
	a := Check{Policy: "consumer", Key: "a", Rule: Rule{Rate: 100, Period: time.Minute, Burst: 10}}
	b := Check{Policy: "ip", Key: "b", Rule: Rule{Rate: 1, Period: time.Hour, Burst: 2}}
	// Spend B's burst alone.
	for range 2 {
		if res, err := lim.Allow(ctx, b.Key, b.Rule); err != nil || !res.Allowed {
			t.Fatalf("spending B: %+v %v", res, err)
		}
	}
	for i := range 5 {
		v, err := AllowAll(ctx, lim, []Check{a, b})
		if err != nil {
			t.Fatal(err)
		}
		if v.Allowed {
			t.Fatalf("attempt %d allowed with B exhausted", i)
		}
		if v.Binding != 1 || v.Result().Allowed || v.Result().RetryAfter <= 0 {
			t.Fatalf("attempt %d: binding %d result %+v, want B denying with a RetryAfter", i, v.Binding, v.Result())
		}
		if ra := v.Results[0]; !ra.Allowed || ra.Remaining != 10 {
			t.Fatalf("attempt %d: A shows %+v, want passing with all 10 remaining", i, ra)
		}
	}
	// A alone confirms nothing was taken: 10 left, this request takes one.
	res, err := lim.Allow(ctx, a.Key, a.Rule)
	if err != nil || res.Remaining != 9 {
		t.Fatalf("A after B's denials: %+v %v, want remaining 9", res, err)
	}
	// With B passing (a fresh B key), both are consumed.
	b.Key = "b2"
	v, err := AllowAll(ctx, lim, []Check{a, b})
	if err != nil || !v.Allowed {
		t.Fatalf("both passing: %+v %v", v, err)
	}
	if v.Results[0].Remaining != 8 || v.Results[1].Remaining != 1 {
		t.Fatalf("remaining after joint admit: A %d B %d, want 8 and 1", v.Results[0].Remaining, v.Results[1].Remaining)
	}
	if v.Binding != 1 {
		t.Fatalf("binding %d, want B (fewest remaining)", v.Binding)
	}
}

// TestLocalMultiSameKeyTwice: two checks on one key apply in turn.
func TestLocalMultiSameKeyTwice(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now})
	c := Check{Key: "k", Rule: Rule{Rate: 1, Period: time.Hour, Burst: 3}}
	v, _ := AllowAll(ctx, l, []Check{c, c})
	if !v.Allowed || v.Results[1].Remaining != 1 {
		t.Fatalf("first pair: %+v, want allowed with 1 left", v)
	}
	v, _ = AllowAll(ctx, l, []Check{c, c}) // one left, two needed
	if v.Allowed {
		t.Fatalf("second pair allowed with one unit left: %+v", v)
	}
	if res, _ := l.Allow(ctx, "k", c.Rule); !res.Allowed || res.Remaining != 0 {
		t.Fatalf("the unit left must still be there: %+v", res)
	}
}

// TestLocalMultiConcurrent: many goroutines with overlapping key sets in
// different orders: no deadlock, and each shared key admits exactly its
// burst.
func TestLocalMultiConcurrent(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Shards: 4, Now: clk.Now})
	rule := Rule{Rate: 1, Period: time.Hour, Burst: 200}
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}
	var perKey [10]atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range 400 {
				i, j := r.IntN(10), r.IntN(10)
				checks := []Check{{Key: keys[i], Rule: rule}, {Key: keys[j], Rule: rule}}
				ok, err := l.AllowMulti(ctx, checks, make([]Result, 2))
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					perKey[i].Add(1)
					perKey[j].Add(1)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("deadlock: AllowMulti did not finish")
	}
	for i := range perKey {
		if n := perKey[i].Load(); n > 200 {
			t.Errorf("key %d admitted %d units, burst 200", i, n)
		}
	}
}

func TestLocalMultiManyChecks(t *testing.T) {
	l := NewLocal(LocalOptions{})
	var checks []Check
	for i := range 12 { // more than the stack buffers hold
		checks = append(checks, Check{Key: fmt.Sprint("k", i), Rule: Rule{Rate: 1, Period: time.Hour, Burst: 1}})
	}
	v, err := AllowAll(ctx, l, checks)
	if err != nil || !v.Allowed {
		t.Fatalf("%+v %v", v, err)
	}
	v, _ = AllowAll(ctx, l, checks)
	if v.Allowed {
		t.Fatal("second round allowed")
	}
}
