package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// RunDiscovery runs the DiscoveryStore conformance tests; open is as for Run.
func RunDiscovery(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []test{
		{"upsert adds and merges", testDiscoveryMerge},
		{"filter", testDiscoveryFilter},
		{"rejects bad entries atomically", testDiscoveryRejects},
		{"concurrent upserts add up", testDiscoveryConcurrent},
		{"canceled context", testDiscoveryCanceled},
		{"purge", testDiscoveryPurge},
		{"body schema", testDiscoveryBodySchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

func disc(host, method, tmpl string, n int64, first, last time.Time, callers ...store.DiscoveredCaller) store.DiscoveredEndpoint {
	return store.DiscoveredEndpoint{Host: host, Method: method, Template: tmpl, Count: n, Status1xx2xx: n,
		FirstSeen: first, LastSeen: last, Callers: callers}
}

func testDiscoveryMerge(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	got, err := s.ListDiscovery(ctx, store.DiscoveryFilter{})
	mustNoErr(t, err, "ListDiscovery empty")
	if len(got) != 0 {
		t.Fatalf("empty store lists %d entries", len(got))
	}
	a := disc("api.example.com", "GET", "/orders/{int}", 3, at(time.Hour), at(2*time.Hour),
		store.DiscoveredCaller{Consumer: "acme-billing", Partner: "acme", Count: 2, LastSeen: at(2 * time.Hour)},
		store.DiscoveredCaller{Consumer: "", Count: 1, LastSeen: at(time.Hour)})
	a.Status4xx = 1
	b := disc("api.example.com", "POST", "/orders", 1, at(0), at(0))
	mustNoErr(t, s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{a, b}), "UpsertDiscovery 1")
	// Second flush: earlier first-seen, later last-seen, a known and a new caller.
	a2 := disc("api.example.com", "GET", "/orders/{int}", 5, at(30*time.Minute), at(3*time.Hour),
		store.DiscoveredCaller{Consumer: "acme-billing", Partner: "acme", Count: 5, LastSeen: at(90 * time.Minute)},
		store.DiscoveredCaller{Consumer: "zeta", Count: 1, LastSeen: at(3 * time.Hour)})
	a2.Status5xx = 2
	mustNoErr(t, s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{a2}), "UpsertDiscovery 2")

	got, err = s.ListDiscovery(ctx, store.DiscoveryFilter{})
	mustNoErr(t, err, "ListDiscovery")
	if len(got) != 2 {
		t.Fatalf("got %d entries, want 2: %+v", len(got), got)
	}
	// Ordered by host, template, method: /orders before /orders/{int}.
	if got[0].Template != "/orders" || got[1].Template != "/orders/{int}" {
		t.Fatalf("order: %s, %s", got[0].Template, got[1].Template)
	}
	g := got[1]
	if g.Count != 8 || g.Status1xx2xx != 8 || g.Status4xx != 1 || g.Status5xx != 2 || g.Status3xx != 0 {
		t.Errorf("counts = %+v", g)
	}
	equalTime(t, "FirstSeen", g.FirstSeen, want(at(30*time.Minute)))
	equalTime(t, "LastSeen", g.LastSeen, want(at(3*time.Hour)))
	if len(g.Callers) != 3 {
		t.Fatalf("callers = %+v", g.Callers)
	}
	// Ordered by consumer: "" (anonymous), acme-billing, zeta.
	if g.Callers[0].Consumer != "" || g.Callers[1].Consumer != "acme-billing" || g.Callers[2].Consumer != "zeta" {
		t.Fatalf("caller order = %+v", g.Callers)
	}
	if c := g.Callers[1]; c.Count != 7 || c.Partner != "acme" {
		t.Errorf("acme-billing = %+v", c)
	}
	equalTime(t, "caller LastSeen", g.Callers[1].LastSeen, want(at(2*time.Hour)))
	if len(got[0].Callers) != 0 {
		t.Errorf("callers of /orders = %+v", got[0].Callers)
	}
}

func testDiscoveryFilter(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustNoErr(t, s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{
		disc("a.example", "GET", "/x", 1, at(0), at(0), store.DiscoveredCaller{Consumer: "c1", Count: 1, LastSeen: at(0)}),
		disc("b.example", "GET", "/x", 1, at(0), at(48*time.Hour), store.DiscoveredCaller{Consumer: "c2", Count: 1, LastSeen: at(0)}),
		disc("", "GET", "/y", 1, at(0), at(0)),
	}), "UpsertDiscovery")
	got, err := s.ListDiscovery(ctx, store.DiscoveryFilter{Host: "b.example"})
	mustNoErr(t, err, "ListDiscovery host")
	if len(got) != 1 || got[0].Host != "b.example" || len(got[0].Callers) != 1 || got[0].Callers[0].Consumer != "c2" {
		t.Errorf("host filter = %+v", got)
	}
	got, err = s.ListDiscovery(ctx, store.DiscoveryFilter{SeenSince: at(24 * time.Hour)})
	mustNoErr(t, err, "ListDiscovery since")
	if len(got) != 1 || got[0].Host != "b.example" {
		t.Errorf("since filter = %+v", got)
	}
	got, err = s.ListDiscovery(ctx, store.DiscoveryFilter{SeenSince: at(48 * time.Hour)})
	mustNoErr(t, err, "ListDiscovery since (inclusive)")
	if len(got) != 1 {
		t.Errorf("since is inclusive: got %d", len(got))
	}
	got, err = s.ListDiscovery(ctx, store.DiscoveryFilter{})
	mustNoErr(t, err, "ListDiscovery all")
	if len(got) != 3 || got[0].Host != "" {
		t.Errorf("all = %+v", got)
	}
}

func testDiscoveryRejects(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	good := disc("h", "GET", "/ok", 1, at(0), at(0))
	bad := []store.DiscoveredEndpoint{
		disc("h", "", "/x", 1, at(0), at(0)),
		disc("h", "GET", "", 1, at(0), at(0)),
		disc("h", "GET", "/x", 0, at(0), at(0)),
		disc("h", "GET", "/x", 1, time.Time{}, at(0)),
		disc("h", "GET", "/x", 1, at(0), at(0), store.DiscoveredCaller{Consumer: "c", Count: 0, LastSeen: at(0)}),
	}
	for i, b := range bad {
		if err := s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{good, b}); err == nil {
			t.Errorf("bad entry %d accepted", i)
		}
	}
	got, err := s.ListDiscovery(ctx, store.DiscoveryFilter{})
	mustNoErr(t, err, "ListDiscovery")
	if len(got) != 0 {
		t.Errorf("a refused batch left %d rows", len(got))
	}
}

func testDiscoveryConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const workers, rounds = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				errs <- s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{
					disc("h", "GET", "/hot", 1, at(time.Duration(r)*time.Second), at(time.Duration(r)*time.Second),
						store.DiscoveredCaller{Consumer: "c", Count: 1, LastSeen: at(0)}),
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		mustNoErr(t, err, "concurrent UpsertDiscovery")
	}
	got, err := s.ListDiscovery(ctx, store.DiscoveryFilter{})
	mustNoErr(t, err, "ListDiscovery")
	if len(got) != 1 || got[0].Count != workers*rounds || got[0].Callers[0].Count != workers*rounds {
		t.Errorf("after concurrent upserts: %+v", got)
	}
}

func testDiscoveryCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if err := s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{disc("h", "GET", "/x", 1, at(0), at(0))}); err == nil {
		t.Error("UpsertDiscovery with a canceled context succeeded")
	}
	if _, err := s.ListDiscovery(ctx, store.DiscoveryFilter{}); err == nil {
		t.Error("ListDiscovery with a canceled context succeeded")
	}
}

func testDiscoveryPurge(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustNoErr(t, s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{
		disc("h", "GET", "/old", 1, at(0), at(time.Hour), store.DiscoveredCaller{Consumer: "c", Count: 1, LastSeen: at(0)}),
		disc("h", "GET", "/edge", 1, at(0), at(2*time.Hour)),
		disc("h", "GET", "/new", 1, at(0), at(3*time.Hour), store.DiscoveredCaller{Consumer: "c", Count: 1, LastSeen: at(0)}),
	}), "UpsertDiscovery")
	n, err := s.PurgeDiscovery(ctx, at(2*time.Hour))
	mustNoErr(t, err, "PurgeDiscovery")
	if n != 1 {
		t.Errorf("purged %d, want 1 (strictly before)", n)
	}
	got, err := s.ListDiscovery(ctx, store.DiscoveryFilter{})
	mustNoErr(t, err, "ListDiscovery")
	if len(got) != 2 || got[0].Template != "/edge" || got[1].Template != "/new" || len(got[1].Callers) != 1 {
		t.Errorf("after purge: %+v", got)
	}
	// The purged endpoint's callers went with it: upserting it again
	// starts from zero.
	mustNoErr(t, s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{
		disc("h", "GET", "/old", 1, at(4*time.Hour), at(4*time.Hour), store.DiscoveredCaller{Consumer: "c", Count: 1, LastSeen: at(4 * time.Hour)}),
	}), "UpsertDiscovery again")
	got, err = s.ListDiscovery(ctx, store.DiscoveryFilter{Host: "h"})
	mustNoErr(t, err, "ListDiscovery")
	for _, e := range got {
		if e.Template == "/old" && (e.Count != 1 || len(e.Callers) != 1 || e.Callers[0].Count != 1) {
			t.Errorf("re-added endpoint kept old counts: %+v", e)
		}
	}
}

// testDiscoveryBodySchema: a body schema is stored, and a later upsert
// without one keeps it.
func testDiscoveryBodySchema(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	e := disc("h", "POST", "/orders", 1, at(0), at(0))
	e.BodySchema = `{"type":"object","properties":{"sku":{"type":"string"}}}`
	mustNoErr(t, s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{e}), "upsert with schema")
	mustNoErr(t, s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{disc("h", "POST", "/orders", 2, at(time.Minute), at(time.Minute))}), "upsert without")
	got, err := s.ListDiscovery(ctx, store.DiscoveryFilter{})
	mustNoErr(t, err, "list")
	if len(got) != 1 || got[0].Count != 3 || got[0].BodySchema != e.BodySchema {
		t.Fatalf("got %+v", got)
	}
	e.BodySchema = `{"type":"array"}`
	mustNoErr(t, s.UpsertDiscovery(ctx, []store.DiscoveredEndpoint{e}), "upsert new schema")
	got, _ = s.ListDiscovery(ctx, store.DiscoveryFilter{})
	if got[0].BodySchema != `{"type":"array"}` {
		t.Errorf("schema not replaced: %q", got[0].BodySchema)
	}
}
