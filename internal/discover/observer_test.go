package discover

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

var t0 = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

func templates(eps []store.DiscoveredEndpoint) map[string]store.DiscoveredEndpoint {
	m := map[string]store.DiscoveredEndpoint{}
	for _, e := range eps {
		m[e.Host+" "+e.Method+" "+e.Template] = e
	}
	return m
}

func TestObserveAggregates(t *testing.T) {
	o := NewObserver(Options{SampleAboveRPS: -1})
	o.Observe("API.Example.com:8443", "GET", "/orders/42", 200, "acme-billing", "acme", t0)
	o.Observe("api.example.com.", "GET", "/orders/43", 404, "", "", t0.Add(time.Second))
	o.Observe("api.example.com", "GET", "/orders/44", 503, "acme-billing", "acme", t0.Add(2*time.Second))
	o.Observe("api.example.com", "BREW", "/orders/44", 501, "", "", t0)
	o.Observe("[::1]:443", "POST", "/orders", 302, "", "", t0)
	got := templates(o.Peek())
	e, ok := got["api.example.com GET /orders/{int}"]
	if !ok {
		t.Fatalf("templates = %v", got)
	}
	if e.Count != 3 || e.Status1xx2xx != 1 || e.Status4xx != 1 || e.Status5xx != 1 {
		t.Errorf("counts = %+v", e)
	}
	if !e.FirstSeen.Equal(t0) || !e.LastSeen.Equal(t0.Add(2*time.Second)) {
		t.Errorf("times = %v %v", e.FirstSeen, e.LastSeen)
	}
	if len(e.Callers) != 2 || e.Callers[0].Consumer != "" || e.Callers[1].Consumer != "acme-billing" || e.Callers[1].Count != 2 || e.Callers[1].Partner != "acme" {
		t.Errorf("callers = %+v", e.Callers)
	}
	if _, ok := got["api.example.com OTHER /orders/{int}"]; !ok {
		t.Errorf("invented method not folded into OTHER: %v", got)
	}
	if _, ok := got["::1 POST /orders"]; !ok {
		t.Errorf("IPv6 host: %v", got)
	}
	// Drain hands the counts over once.
	if n := len(o.Drain()); n != 3 {
		t.Errorf("Drain = %d entries", n)
	}
	if n := len(o.Drain()); n != 0 {
		t.Errorf("second Drain = %d entries, want 0", n)
	}
	o.Observe("api.example.com", "GET", "/orders/45", 200, "", "", t0)
	if d := o.Drain(); len(d) != 1 || d[0].Count != 1 || len(d[0].Callers) != 1 {
		t.Errorf("after drain: %+v", d)
	}
}

func TestObserveMergesFreeText(t *testing.T) {
	o := NewObserver(Options{SampleAboveRPS: -1, MergeAfter: 10})
	// Resource names repeat: they stay literal.
	for i := 0; i < 5; i++ {
		for _, r := range []string{"repos", "followers", "gists", "keys", "events", "orgs", "starred", "subscriptions", "received_events"} {
			o.Observe("h", "GET", "/users/octocat/"+r, 200, "", "", t0)
		}
	}
	// Logins do not: past the sparseness test they become {str}.
	for i := 0; i < 30; i++ {
		o.Observe("h", "GET", fmt.Sprintf("/users/user%c%c/repos", 'a'+i%26, 'a'+i/26), 200, "", "", t0)
	}
	got := templates(o.Peek())
	if _, ok := got["h GET /users/{str}/repos"]; !ok {
		t.Fatalf("logins not merged: %v", keys(got))
	}
	if _, ok := got["h GET /users/{str}/starred"]; !ok {
		t.Errorf("octocat's subtree not folded into the parameter: %v", keys(got))
	}
	for k := range got {
		if strings.Contains(k, "octocat") || strings.Contains(k, "/usera") {
			t.Errorf("literal login survived the merge: %s", k)
		}
	}
	if e := got["h GET /users/{str}/repos"]; e.Count != 35 {
		t.Errorf("merged count = %d, want 35", e.Count)
	}
	if len(got) != 9 {
		t.Errorf("templates = %d, want 9: %v", len(got), keys(got))
	}
}

func TestObserveMergeAfterCap(t *testing.T) {
	// Values that repeat (so not sparse) still merge past MergeAfter.
	o := NewObserver(Options{SampleAboveRPS: -1, MergeAfter: 12})
	for r := 0; r < 3; r++ {
		for i := 0; i < 20; i++ {
			o.Observe("h", "GET", fmt.Sprintf("/tags/tag%c", 'a'+i), 200, "", "", t0)
		}
	}
	got := templates(o.Peek())
	if e, ok := got["h GET /tags/{str}"]; !ok || e.Count != 60 {
		t.Errorf("templates = %v", got)
	}
	if len(got) != 1 {
		t.Errorf("templates = %v", keys(got))
	}
}

func TestObservePinsKeepDeclaredLiterals(t *testing.T) {
	o := NewObserver(Options{SampleAboveRPS: -1, MergeAfter: 10})
	o.SetPins(map[string][]string{"": {"/users/me", "/users/{login}"}})
	for i := 0; i < 40; i++ {
		o.Observe("any.example", "GET", fmt.Sprintf("/users/login%c%c", 'a'+i%26, 'a'+i/26), 200, "", "", t0)
		o.Observe("any.example", "GET", "/users/me", 200, "", "", t0)
	}
	got := templates(o.Peek())
	if got["any.example GET /users/me"].Count != 40 || got["any.example GET /users/{str}"].Count != 40 || len(got) != 2 {
		t.Errorf("templates = %v", got)
	}
}

// TestObserveBounds is the attacker's table: each row floods the observer
// with something a client controls, and memory must stay bounded while the
// benign twin (a known endpoint) keeps counting.
func TestObserveBounds(t *testing.T) {
	rows := []struct {
		name  string
		flood func(i int) (host, method, path string)
	}{
		{"random hosts", func(i int) (string, string, string) { return fmt.Sprintf("h%d.evil", i), "GET", "/" }},
		{"random paths", func(i int) (string, string, string) {
			return "api", "GET", fmt.Sprintf("/%c%c%c/x%c", 'a'+i%26, 'a'+i/26%26, 'a'+i/676%26, 'a'+i%7)
		}},
		{"random methods", func(i int) (string, string, string) { return "api", fmt.Sprintf("M%d", i), "/known" }},
		{"deep paths", func(i int) (string, string, string) { return "api", "GET", strings.Repeat("/a", 40+i%10) }},
		{"long segments", func(i int) (string, string, string) {
			return "api", "GET", "/files/" + strings.Repeat(string(rune('a'+i%26)), 70+i%500)
		}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			o := NewObserver(Options{SampleAboveRPS: -1, MaxTemplates: 100, MaxHosts: 8, MaxDepth: 32})
			o.SetPins(map[string][]string{"api": {"/known"}}) // as the gateway pins its registry
			o.Observe("api", "GET", "/known", 200, "", "", t0)
			for i := 0; i < 20000; i++ {
				h, m, p := r.flood(i)
				o.Observe(h, m, p, 404, "", "", t0)
			}
			o.Observe("api", "GET", "/known", 200, "", "", t0)
			o.mu.RLock()
			hosts, nodes, eps := len(o.hosts), o.nodes, o.endpoints
			o.mu.RUnlock()
			if hosts > 8 || eps > 100 || nodes > 100*maxNodesPer {
				t.Errorf("unbounded: %d hosts, %d nodes, %d endpoints", hosts, nodes, eps)
			}
			got := templates(o.Peek())
			if got["api GET /known"].Count != 2 {
				t.Errorf("known endpoint count = %d, want 2", got["api GET /known"].Count)
			}
			var total int64
			for _, e := range got {
				total += e.Count
			}
			if total+o.Dropped() != 20002 {
				t.Errorf("recorded %d + dropped %d != 20002 calls", total, o.Dropped())
			}
		})
	}
}

func TestObserveCallersBounded(t *testing.T) {
	o := NewObserver(Options{SampleAboveRPS: -1, MaxCallers: 4})
	for i := 0; i < 50; i++ {
		o.Observe("h", "GET", "/x", 200, fmt.Sprintf("consumer-%d", i), "", t0)
	}
	e := o.Peek()[0]
	if len(e.Callers) != 5 { // four named and OtherCaller
		t.Fatalf("callers = %+v", e.Callers)
	}
	var sum int64
	for _, c := range e.Callers {
		sum += c.Count
	}
	if sum != 50 {
		t.Errorf("caller counts sum to %d, want 50", sum)
	}
}

func TestObserveSampling(t *testing.T) {
	o := NewObserver(Options{SampleAboveRPS: 100})
	// Second 0: 1000 calls, all recorded (the rate is learned from it).
	for i := 0; i < 1000; i++ {
		o.Observe("h", "GET", "/x", 200, "", "", t0)
	}
	// Second 1: the previous second ran at 1000/s, ten times the limit:
	// one call in ten is recorded, weighted ten.
	for i := 0; i < 1000; i++ {
		o.Observe("h", "GET", "/x", 200, "", "", t0.Add(time.Second))
	}
	if got := o.every.Load(); got != 10 {
		t.Errorf("sampling 1 in %d, want 10", got)
	}
	e := o.Peek()[0]
	if e.Count != 2000 {
		t.Errorf("weighted count = %d, want 2000", e.Count)
	}
	// Quiet again: every call counts.
	o.Observe("h", "GET", "/x", 200, "", "", t0.Add(3*time.Second))
	o.Observe("h", "GET", "/x", 200, "", "", t0.Add(4*time.Second))
	if got := o.every.Load(); got != 1 {
		t.Errorf("after a quiet second sampling is 1 in %d", got)
	}
}

func TestObserveDisabled(t *testing.T) {
	o := NewObserver(Options{})
	o.SetEnabled(false)
	o.Observe("h", "GET", "/x", 200, "", "", t0)
	if len(o.Peek()) != 0 {
		t.Error("disabled observer recorded a call")
	}
}

func TestObserveConcurrent(t *testing.T) {
	// New callers (caller lock), merges (write lock) and drains (read
	// lock, then caller locks) all at once: no deadlock, no race.
	o := NewObserver(Options{SampleAboveRPS: -1, MergeAfter: 20, MaxCallers: 8})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				o.Observe("h", "GET", fmt.Sprintf("/u/name%c%c/items/%d", 'a'+i%26, 'a'+(i/26)%26, i), 200, fmt.Sprint("c", w, i%40), "", t0)
				if i%500 == 0 {
					o.Drain()
				}
			}
		}()
	}
	wg.Wait()
	for _, e := range o.Peek() {
		if e.Template != "/u/{str}/items/{int}" {
			t.Errorf("template %s", e.Template)
		}
	}
}

func keys(m map[string]store.DiscoveredEndpoint) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func FuzzObserve(f *testing.F) {
	f.Add("api.example.com:443", "GET", "/orders/42/items/x")
	f.Add("[::1]", "POST", "//a/../b")
	f.Add("", "X", "/")
	f.Fuzz(func(t *testing.T, host, method, path string) {
		o := NewObserver(Options{SampleAboveRPS: -1, MaxTemplates: 100, MergeAfter: 3})
		for _, p := range []string{path, path + "/1", path + "/a", path + "/b", path + "/c", path + "/d"} {
			o.Observe(host, method, p, 200, "c", "", t0)
		}
		var total int64
		for _, e := range o.Peek() {
			if !strings.HasPrefix(e.Template, "/") || e.Count <= 0 {
				t.Fatalf("bad entry %+v", e)
			}
			total += e.Count
		}
		if path != "" && path[0] == '/' && total+o.Dropped() != 6 {
			t.Fatalf("recorded %d + dropped %d != 6", total, o.Dropped())
		}
	})
}

func BenchmarkObserve(b *testing.B) {
	paths := []string{"/api/v1/orders/12345", "/api/v1/orders/12345/items/9", "/api/v1/customers/cus_9aB3kLm2Qx/invoices",
		"/api/v1/products/550e8400-e29b-41d4-a716-446655440000", "/api/v1/not/registered/404"}
	b.Run("serial", func(b *testing.B) {
		o := NewObserver(Options{SampleAboveRPS: -1})
		for _, p := range paths {
			o.Observe("api.example.com:8443", "GET", p, 200, "acme", "acme", t0)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			o.Observe("api.example.com:8443", "GET", paths[i%len(paths)], 200, "acme", "acme", t0)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		o := NewObserver(Options{SampleAboveRPS: -1})
		for _, p := range paths {
			o.Observe("api.example.com:8443", "GET", p, 200, "acme", "acme", t0)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				o.Observe("api.example.com:8443", "GET", paths[i%len(paths)], 200, "acme", "acme", t0)
				i++
			}
		})
	})
	b.Run("sampled-1-in-100", func(b *testing.B) {
		// The previous second ran at 100 times the limit.
		o := NewObserver(Options{SampleAboveRPS: 10})
		for i := 0; i < 1000; i++ {
			o.Observe("api.example.com:8443", "GET", paths[i%len(paths)], 200, "acme", "acme", t0)
		}
		now := t0.Add(time.Second)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			o.Observe("api.example.com:8443", "GET", paths[i%len(paths)], 200, "acme", "acme", now)
		}
	})
}
