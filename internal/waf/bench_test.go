package waf

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// go test ./internal/waf -run '^$' -bench . -benchmem
func BenchmarkInspect(b *testing.B) {
	w := mustWAF(b, Config{Mode: ModeBlock})
	body := jsonBody1KiB()
	attack := httptest.NewRequest(http.MethodGet, "http://api.example.com/orders?id=1%27%20OR%20%271%27%3D%271", nil)
	attack.Header.Set("User-Agent", "Mozilla/5.0")
	cases := []struct {
		name string
		req  *http.Request
		body []byte
	}{
		{"benign-GET", benignGET(), nil},
		{"benign-JSON-1KiB", jsonPOST(body), body},
		{"attack-SQLi-query", attack, nil},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w.Inspect(c.req, "203.0.113.7", c.body)
			}
		})
		b.Run(c.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w.Inspect(c.req, "203.0.113.7", c.body)
				}
			})
		})
	}
}

// BenchmarkNew measures building an instance at config load.
//
// cold: nothing else alive, so Coraza compiles every expression (New, then
// Close, which releases them for the next iteration). shared: another
// instance is alive, so the compiled expressions are reused, which is the
// case for every config after the first. MiB/instance is the live heap the
// new instance adds.
func BenchmarkNew(b *testing.B) {
	testCache.Retain() // instances left by other benchmarks would share their expressions
	b.Run("cold", func(b *testing.B) { benchNew(b, Config{Mode: ModeBlock}) })
	first, err := New(Config{Mode: ModeBlock})
	if err != nil {
		b.Fatal(err)
	}
	defer first.Close()
	b.Run("shared", func(b *testing.B) { benchNew(b, Config{Mode: ModeDetect, Paranoia: 2}) })
}

func benchNew(b *testing.B, cfg Config) {
	var live uint64
	for b.Loop() {
		b.StopTimer()
		before := heapAfterGC()
		b.StartTimer()
		w, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		live = heapAfterGC() - before
		_ = w.Close()
		b.StartTimer()
	}
	b.ReportMetric(mib(live), "MiB/instance")
}
