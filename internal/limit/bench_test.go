package limit

import (
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

var benchRule = Rule{Rate: 1_000_000_000, Period: time.Second, Burst: 1_000_000}

// BenchmarkLocalAllow: one hot key, the common case of a consumer limit.
func BenchmarkLocalAllow(b *testing.B) {
	l := NewLocal(LocalOptions{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Allow(ctx, "consumer:acme-billing", benchRule); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocalAllowManyKeys cycles through 64k existing keys (cache
// misses included), as per-IP limits do.
func BenchmarkLocalAllowManyKeys(b *testing.B) {
	l := NewLocal(LocalOptions{})
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = "ip:10.0." + strconv.Itoa(i>>8) + "." + strconv.Itoa(i&255) + "/32"
		l.Allow(ctx, keys[i], benchRule)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(ctx, keys[i&(len(keys)-1)], benchRule)
		i++
	}
}

// BenchmarkLocalAllowParallel: all cores, distinct keys spread over shards.
func BenchmarkLocalAllowParallel(b *testing.B) {
	l := NewLocal(LocalOptions{})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "consumer:" + strconv.Itoa(i)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 97
		for pb.Next() {
			l.Allow(ctx, keys[i&(len(keys)-1)], benchRule)
			i++
		}
	})
}

// BenchmarkLocalAllowMulti: three limits on one request (consumer, IP,
// operation), atomically.
func BenchmarkLocalAllowMulti(b *testing.B) {
	l := NewLocal(LocalOptions{})
	checks := []Check{
		{Policy: "consumer", Key: "consumer:acme-billing", Rule: benchRule},
		{Policy: "ip", Key: "ip:203.0.113.7/32", Rule: benchRule},
		{Policy: "op", Key: "op:orders:getOrder", Rule: benchRule},
	}
	results := make([]Result, len(checks))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.AllowMulti(ctx, checks, results); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClientIPKey(b *testing.B) {
	v4 := netip.MustParseAddr("203.0.113.7")
	v6 := netip.MustParseAddr("2001:db8:1:2:3:4:5:6")
	b.ReportAllocs()
	for b.Loop() {
		_ = ClientIPKey(v4, 0, 0)
		_ = ClientIPKey(v6, 0, 0)
	}
}

func BenchmarkHeaders(b *testing.B) {
	h := http.Header{}
	res := Result{Allowed: true, Limit: 50, Remaining: 42, ResetAfter: 1500 * time.Millisecond}
	r := Rule{Rate: 100, Period: time.Second, Burst: 50}
	b.ReportAllocs()
	for b.Loop() {
		Headers(h, "consumer", res, r)
	}
}
