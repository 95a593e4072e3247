package discover

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/registry"
	"github.com/gatehouse/gatehouse/internal/store"
)

func testRegistry() *registry.Registry {
	api := func(name, version, lifecycle, host, base string, ops ...registry.Operation) *registry.API {
		return &registry.API{Spec: &registry.Spec{Operations: ops}, Config: config.API{Name: name, Version: version,
			Lifecycle: lifecycle, Route: config.APIRoute{Host: host, BasePath: base}}}
	}
	op := func(id, method, path string) registry.Operation {
		return registry.Operation{ID: id, Method: method, Path: path}
	}
	return &registry.Registry{APIs: []*registry.API{
		api("orders", "v2", "active", "api.example.com", "/orders/v2",
			op("getOrder", "GET", "/orders/{orderId}"), op("listOrders", "GET", "/orders"), op("me", "GET", "/orders/me")),
		api("orders", "v1", "deprecated", "api.example.com", "/orders/v1",
			op("getOrderV1", "GET", "/orders/{orderId}")),
		api("legacy", "v0", "retired", "api.example.com", "/legacy",
			op("getThing", "GET", "/things/{id}")),
		api("public", "v1", "active", "", "/pub",
			op("ping", "GET", "/ping")),
	}}
}

func ep(host, method, tmpl string, n int64, last time.Time, callers ...store.DiscoveredCaller) store.DiscoveredEndpoint {
	return store.DiscoveredEndpoint{Host: host, Method: method, Template: tmpl, Count: n, Status1xx2xx: n,
		FirstSeen: last.Add(-time.Hour), LastSeen: last, Callers: callers}
}

func TestAnalyze(t *testing.T) {
	now := t0
	old := now.Add(-40 * 24 * time.Hour)
	obs := []store.DiscoveredEndpoint{
		ep("api.example.com", "GET", "/orders/v2/orders/{int}", 10, now),
		ep("api.example.com", "GET", "/orders/v2/orders/{uuid}", 2, now), // same shape: merged
		ep("api.example.com", "GET", "/orders/v2/orders", 1, old),        // too long ago: orphan
		ep("api.example.com", "DELETE", "/orders/v2/orders/{int}", 1, now),
		ep("api.example.com", "GET", "/orders/v2/admin", 3, now),
		ep("api.example.com", "GET", "/orders/v1/orders/{int}", 4, now,
			store.DiscoveredCaller{Consumer: "acme-app", Partner: "acme", Count: 3, LastSeen: now},
			store.DiscoveredCaller{Consumer: "", Count: 1, LastSeen: now}),
		ep("api.example.com", "GET", "/orders/v1/orders/{str}", 1, now,
			store.DiscoveredCaller{Consumer: "acme-app", Partner: "acme", Count: 1, LastSeen: now}),
		ep("api.example.com", "GET", "/legacy/things/{int}", 2, now, store.DiscoveredCaller{Count: 2, LastSeen: now}),
		// The default-host API is not reachable on a host that has its own APIs...
		ep("api.example.com", "GET", "/pub/ping", 1, now),
		// ...and is on any other host.
		ep("other.example", "GET", "/pub/ping", 1, now),
	}
	rep, err := Analyze(context.Background(), NewCatalog(testRegistry()), obs, now, 30*24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	shadow := map[string]string{}
	for _, s := range rep.Shadow {
		shadow[s.Host+" "+s.Method+" "+s.Template] = s.Reason
	}
	wantShadow := map[string]string{
		"api.example.com DELETE /orders/v2/orders/{int}": "undeclared_method",
		"api.example.com GET /orders/v2/admin":           "undeclared_path",
		"api.example.com GET /pub/ping":                  "undeclared_path",
	}
	if len(shadow) != len(wantShadow) {
		t.Errorf("shadow = %v", shadow)
	}
	for k, v := range wantShadow {
		if shadow[k] != v {
			t.Errorf("shadow %s = %q, want %q", k, shadow[k], v)
		}
	}
	if len(rep.Zombie) != 2 {
		t.Fatalf("zombie = %+v", rep.Zombie)
	}
	z := rep.Zombie[0] // legacy sorts before orders
	if z.API != "legacy" || z.Lifecycle != "retired" || z.Count != 2 || len(z.Callers) != 1 || z.Callers[0].Consumer != "" {
		t.Errorf("retired zombie = %+v", z)
	}
	z = rep.Zombie[1]
	if z.API != "orders" || z.Version != "v1" || z.OperationID != "getOrderV1" || z.Count != 5 || len(z.Callers) != 2 ||
		z.Callers[1].Consumer != "acme-app" || z.Callers[1].Count != 4 || z.Callers[1].Partner != "acme" {
		t.Errorf("deprecated zombie = %+v", z)
	}
	orphans := map[string]bool{}
	for _, o := range rep.Orphans {
		orphans[o.OperationID] = true
	}
	// listOrders was last called 40 days ago; "me" never; the retired API
	// is no orphan (no traffic is what retirement wants).
	if !orphans["listOrders"] || !orphans["me"] || orphans["getOrder"] || orphans["getThing"] || orphans["ping"] || orphans["getOrderV1"] {
		t.Errorf("orphans = %v", orphans)
	}
	if !rep.ObservedSince.Equal(old.Add(-time.Hour)) {
		t.Errorf("observed since %v", rep.ObservedSince)
	}
	if rep.Drift == nil || len(rep.Drift) != 0 {
		t.Errorf("drift = %v, want empty non-nil", rep.Drift)
	}
}

type fakeDrift struct {
	d   []Drift
	err error
}

func (f fakeDrift) Drift(context.Context) ([]Drift, error) { return f.d, f.err }

func TestAnalyzeDriftHook(t *testing.T) {
	cat := NewCatalog(testRegistry())
	rep, err := Analyze(context.Background(), cat, nil, t0, time.Hour, fakeDrift{d: []Drift{{API: "orders", OperationID: "getOrder", RequestViolations: 3}}})
	if err != nil || len(rep.Drift) != 1 || rep.Drift[0].RequestViolations != 3 {
		t.Errorf("drift = %+v, %v", rep.Drift, err)
	}
	if _, err := Analyze(context.Background(), cat, nil, t0, time.Hour, fakeDrift{err: errors.New("down")}); err == nil {
		t.Error("a failing drift source is not reported")
	}
}

func TestLearnedOpenAPI(t *testing.T) {
	obs := []store.DiscoveredEndpoint{
		ep("h", "GET", "/orders/{int}", 3, t0),
		ep("h", "DELETE", "/orders/{int}", 1, t0),
		ep("h", "GET", "/orders/{int}/items/{uuid}", 1, t0),
		ep("h", "GET", "/companies/{str}/reports/{date}", 1, t0),
		ep("h", "GET", "/{hex}/{hex}", 1, t0),
		ep("h", "OTHER", "/orders", 1, t0),
		ep("elsewhere", "GET", "/secret", 1, t0),
	}
	obs[0].Status4xx = 1
	doc, err := LearnedOpenAPI(obs, OpenAPIOptions{Host: "h", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := registry.ParseSpec("learned.yaml", doc)
	if err != nil {
		t.Fatalf("learned document does not load: %v\n%s", err, doc)
	}
	got := map[string]bool{}
	for _, o := range spec.Operations {
		got[o.Method+" "+o.Path] = true
	}
	for _, want := range []string{"GET /orders/{orderId}", "DELETE /orders/{orderId}", "GET /orders/{orderId}/items/{itemId}",
		"GET /companies/{companyId}/reports/{reportId}", "GET /{param1}/{param2}"} {
		if !got[want] {
			t.Errorf("missing %s in %v", want, got)
		}
	}
	if len(spec.Operations) != 5 {
		t.Errorf("operations = %v (OTHER and other hosts must not appear)", got)
	}
	text := string(doc)
	for _, want := range []string{"openapi: 3.1.0", "format: uuid", "format: date", "type: integer", "4XX:", "x-gatehouse-observed:"} {
		if !strings.Contains(text, want) {
			t.Errorf("document lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "secret") {
		t.Error("another host's endpoint leaked into the document")
	}
}

type failingStore struct {
	fail  bool
	calls int
	got   []store.DiscoveredEndpoint
}

func (f *failingStore) UpsertDiscovery(_ context.Context, e []store.DiscoveredEndpoint) error {
	f.calls++
	if f.fail {
		return errors.New("store down")
	}
	f.got = append(f.got, e...)
	return nil
}

func (f *failingStore) PurgeDiscovery(context.Context, time.Time) (int64, error) { return 0, nil }

func (f *failingStore) ListDiscovery(context.Context, store.DiscoveryFilter) ([]store.DiscoveredEndpoint, error) {
	return f.got, nil
}

func TestFlusherRetries(t *testing.T) {
	o := NewObserver(Options{SampleAboveRPS: -1})
	st := &failingStore{fail: true}
	f := &Flusher{Observer: o, Store: st}
	o.Observe("h", "GET", "/a", 200, "", "", t0)
	if err := f.Flush(context.Background()); err == nil {
		t.Fatal("flush into a failing store succeeded")
	}
	o.Observe("h", "GET", "/a", 200, "", "", t0)
	st.fail = false
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range st.got {
		n += e.Count
	}
	if n != 2 {
		t.Errorf("after retry the store holds %d calls, want 2", n)
	}
	if err := f.Flush(context.Background()); err != nil || len(st.got) != 2 {
		t.Errorf("an empty flush wrote: %v %v", st.got, err)
	}
}
