package discover

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/registry"
	"github.com/gatehouse/gatehouse/internal/store"
)

// A deterministic, realistic API: the resource names, nesting and
// identifier styles of public APIs (GitHub-style owner/repo slugs, Stripe-
// style prefixed ids, UUIDs, commit SHAs, dates, integer numbers), split
// over three API versions on one host.

type genParam struct {
	name string
	kind Kind // how the values look
}

type genOp struct {
	api      int
	method   string
	segs     []string // literal, or "" for a parameter
	params   []genParam
	template string // full template with names
}

var collections = []struct {
	name string
	id   Kind
	subs []string
}{
	{"users", KindString, []string{"repos", "followers", "gists", "keys", "events", "orgs"}},
	{"orgs", KindString, []string{"members", "teams", "repos", "hooks", "invitations", "audit-log"}},
	{"teams", KindInt, []string{"members", "repos", "discussions", "projects"}},
	{"projects", KindInt, []string{"columns", "cards", "collaborators"}},
	{"customers", KindString, []string{"sources", "tax-ids", "balance-transactions", "discounts"}},
	{"invoices", KindString, []string{"lines", "payments", "credit-notes"}},
	{"orders", KindInt, []string{"items", "shipments", "refunds", "notes", "history"}},
	{"products", KindUUID, []string{"variants", "images", "prices", "reviews"}},
	{"payments", KindUUID, []string{"captures", "refunds", "disputes"}},
	{"subscriptions", KindString, []string{"items", "schedules", "usage-records"}},
	{"shipments", KindInt, []string{"parcels", "tracking-events", "labels"}},
	{"warehouses", KindInt, []string{"locations", "stock", "transfers"}},
	{"tickets", KindInt, []string{"comments", "attachments", "tags", "watchers"}},
	{"webhooks", KindUUID, []string{"deliveries", "secrets"}},
	{"accounts", KindUUID, []string{"users", "roles", "api-keys", "sessions"}},
	{"campaigns", KindInt, []string{"recipients", "messages", "stats"}},
	{"documents", KindUUID, []string{"versions", "permissions", "comments"}},
	{"devices", KindHex, []string{"telemetry", "commands", "firmware"}},
	{"sites", KindString, []string{"pages", "domains", "deploys"}},
	{"carts", KindUUID, []string{"items", "coupons"}},
	{"commits", KindHex, []string{"comments", "statuses", "check-runs"}},
	{"employees", KindInt, []string{"timesheets", "leave-requests", "payslips"}},
	{"vehicles", KindString, []string{"trips", "maintenance", "fuel-logs"}},
	{"patients", KindUUID, []string{"appointments", "prescriptions", "allergies"}},
	{"courses", KindInt, []string{"lessons", "enrollments", "assignments"}},
}

var subIDKinds = []Kind{KindInt, KindUUID, KindInt, KindString}

func paramName(coll string) string { return singular(strings.ReplaceAll(coll, "-", "_")) + "_id" }

func genSpec() (ops []genOp) {
	rng := rand.New(rand.NewPCG(7, 7))
	add := func(api int, method string, parts ...any) {
		op := genOp{api: api, method: method}
		var b strings.Builder
		for _, p := range parts {
			switch v := p.(type) {
			case string:
				op.segs = append(op.segs, v)
				b.WriteString("/" + v)
			case genParam:
				op.segs = append(op.segs, "")
				op.params = append(op.params, v)
				b.WriteString("/{" + v.name + "}")
			}
		}
		op.template = b.String()
		ops = append(ops, op)
	}
	for ci, c := range collections {
		api := ci % 3
		id := genParam{paramName(c.name), c.id}
		add(api, "GET", c.name)
		add(api, "POST", c.name)
		add(api, "GET", c.name, id)
		add(api, "PATCH", c.name, id)
		add(api, "DELETE", c.name, id)
		if ci%2 == 0 {
			add(api, "PUT", c.name, id)
			add(api, "POST", c.name, id, "archive")
		}
		for si, s := range c.subs {
			sid := genParam{paramName(s), subIDKinds[(ci+si)%len(subIDKinds)]}
			add(api, "GET", c.name, id, s)
			add(api, "POST", c.name, id, s)
			add(api, "GET", c.name, id, s, sid)
			add(api, "DELETE", c.name, id, s, sid)
			if rng.IntN(3) == 0 {
				add(api, "PATCH", c.name, id, s, sid)
			}
			if rng.IntN(4) == 0 {
				add(api, "GET", c.name, id, s, sid, "history")
			}
		}
	}
	// GitHub-style deep nesting with two free-text slugs in a row.
	owner, repo := genParam{"owner", KindString}, genParam{"repo", KindString}
	number := genParam{"issue_number", KindInt}
	for _, sub := range []string{"issues", "pulls", "releases", "milestones"} {
		add(0, "GET", "repos", owner, repo, sub)
		add(0, "POST", "repos", owner, repo, sub)
		add(0, "GET", "repos", owner, repo, sub, number)
		add(0, "PATCH", "repos", owner, repo, sub, number)
		add(0, "GET", "repos", owner, repo, sub, number, "comments")
		add(0, "POST", "repos", owner, repo, sub, number, "comments")
	}
	add(0, "GET", "repos", owner, repo, "commits", genParam{"ref", KindHex}, "status")
	add(0, "GET", "repos", owner, repo, "branches")
	// Dates and literals beside parameters.
	add(1, "GET", "reports", "daily", genParam{"day", KindDate})
	add(1, "GET", "reports", "sales", genParam{"from", KindDate}, genParam{"to", KindDate})
	add(1, "GET", "orders", "export")
	add(0, "GET", "users", "me") // merged away with the logins beside it
	return ops
}

var apiBases = []string{"/api/v1", "/api/v2", "/billing/v1"}

func genRegistry(ops []genOp, lifecycles ...string) *registry.Registry {
	reg := &registry.Registry{}
	for i, base := range apiBases {
		lc := "active"
		if i < len(lifecycles) {
			lc = lifecycles[i]
		}
		spec := &registry.Spec{}
		for j, o := range ops {
			if o.api == i {
				spec.Operations = append(spec.Operations, registry.Operation{ID: fmt.Sprintf("op%d", j), Method: o.method, Path: o.template})
			}
		}
		reg.APIs = append(reg.APIs, &registry.API{Spec: spec, Config: config.API{Name: fmt.Sprintf("api%d", i), Version: "v1",
			Lifecycle: lc, Route: config.APIRoute{Host: "api.example.com", BasePath: base}}})
	}
	return reg
}

var (
	adjectives = []string{"blue", "quiet", "rapid", "north", "silver", "happy", "brave", "lucky", "green", "iron", "amber", "cosmic", "urban", "wild", "solar"}
	nouns      = []string{"falcon", "river", "labs", "works", "cloud", "forge", "media", "systems", "garden", "harbor", "pixel", "studio", "tiger", "motors", "foods"}
)

// value makes a concrete path segment of the given kind.
func value(rng *rand.Rand, k Kind) string {
	const hexd = "0123456789abcdef"
	switch k {
	case KindInt:
		return fmt.Sprint(rng.IntN(5_000_000) + 1)
	case KindUUID:
		b := make([]byte, 36)
		for i := range b {
			b[i] = hexd[rng.IntN(16)]
		}
		b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
		return string(b)
	case KindHex:
		b := make([]byte, 40)
		for i := range b {
			b[i] = hexd[rng.IntN(16)]
		}
		b[3] = '7' // at least one digit
		return string(b)
	case KindDate:
		return fmt.Sprintf("2026-%02d-%02d", rng.IntN(12)+1, rng.IntN(28)+1)
	}
	// Free text: logins, slugs and prefixed ids, as real traffic has them.
	switch rng.IntN(4) {
	case 0:
		return adjectives[rng.IntN(len(adjectives))] + "-" + nouns[rng.IntN(len(nouns))]
	case 1:
		return fmt.Sprintf("%s%s%d", adjectives[rng.IntN(len(adjectives))], nouns[rng.IntN(len(nouns))], rng.IntN(100))
	case 2:
		const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		b := []byte("cus_")
		for range 14 {
			b = append(b, alnum[rng.IntN(len(alnum))])
		}
		return string(b)
	}
	return nouns[rng.IntN(len(nouns))] + "." + adjectives[rng.IntN(len(adjectives))]
}

func concrete(rng *rand.Rand, base string, o genOp) string {
	var b strings.Builder
	b.WriteString(base)
	pi := 0
	for _, s := range o.segs {
		b.WriteByte('/')
		if s == "" {
			b.WriteString(value(rng, o.params[pi].kind))
			pi++
		} else {
			b.WriteString(s)
		}
	}
	return b.String()
}

// unregistered endpoints: traffic the specs do not declare.
var shadowOps = []genOp{
	{api: 0, method: "GET", segs: []string{"internal", "debug", "vars"}},
	{api: 0, method: "GET", segs: []string{"admin", "users", ""}, params: []genParam{{"id", KindInt}}},
	{api: 1, method: "POST", segs: []string{"orders", "", "refund-override"}, params: []genParam{{"id", KindInt}}},
	{api: 1, method: "DELETE", segs: []string{"orders"}}, // a declared path, an undeclared method
	{api: 2, method: "GET", segs: []string{"exports", "", "download"}, params: []genParam{{"token", KindUUID}}},
	{api: 0, method: "PUT", segs: []string{"users", "", "password"}, params: []genParam{{"login", KindString}}},
	{api: 1, method: "GET", segs: []string{"legacy", "customers", "", "cards"}, params: []genParam{{"id", KindString}}},
	{api: 2, method: "GET", segs: []string{"metrics"}},
}

const replays = 20

func replay(obs *Observer, ops []genOp, seed uint64, now time.Time, rounds int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for r := 0; r < rounds; r++ {
		for _, o := range ops {
			obs.Observe("api.example.com", o.method, concrete(rng, apiBases[o.api], o), 200, "c1", "", now)
		}
	}
}

func shapeOf(base string, o genOp) string {
	var b strings.Builder
	b.WriteString(base)
	for _, s := range o.segs {
		if s == "" {
			s = "{}"
		}
		b.WriteString("/" + s)
	}
	return b.String()
}

type mk struct{ method, shape string }

// measure compares learned templates with the generated spec: recall is the
// share of operations whose template was learned exactly (right literals,
// parameters in the right places), precision the share of learned templates
// that are an operation, types the share of learned operations whose
// parameter kinds are the declared ones.
func measure(t *testing.T, label string, ops []genOp, learned []store.DiscoveredEndpoint, reqs int) (recall, precision, types float64) {
	t.Helper()
	want := map[mk]genOp{}
	for _, o := range ops {
		want[mk{o.method, shapeOf(apiBases[o.api], o)}] = o
	}
	got := map[mk]string{}
	for _, e := range learned {
		got[mk{e.Method, Shape(e.Template)}] = e.Template
	}
	var hit, typed, exact int
	var missed []string
	for k, o := range want {
		tmpl, ok := got[k]
		if !ok {
			missed = append(missed, k.method+" "+k.shape)
			continue
		}
		hit++
		kinds := ParamKinds(tmpl)
		right := len(kinds) == len(o.params)
		for i := 0; right && i < len(kinds); i++ {
			right = kinds[i] == o.params[i].kind
		}
		if right {
			typed++
		}
	}
	for k := range got {
		if _, ok := want[k]; ok {
			exact++
		}
	}
	recall = float64(hit) / float64(len(want))
	precision = float64(exact) / float64(len(got))
	types = float64(typed) / float64(max(hit, 1))
	t.Logf("%s: %d operations, %d requests, %d learned templates: recall %.1f%% (%d/%d), precision %.1f%% (%d/%d), types %.1f%%; missed %v",
		label, len(want), reqs, len(got), 100*recall, hit, len(want), 100*precision, exact, len(got), 100*types, missed)
	return recall, precision, types
}

func TestPrecisionRecall(t *testing.T) {
	ops := genSpec()
	if len(ops) < 400 {
		t.Fatalf("generated spec has %d operations; the test wants several hundred", len(ops))
	}
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	reg := genRegistry(ops)
	cat := NewCatalog(reg)

	// Learning from traffic alone, without the registry's help.
	pure := NewObserver(Options{SampleAboveRPS: -1})
	replay(pure, ops, 1, now, replays)
	r, p, ty := measure(t, "traffic only", ops, pure.Peek(), len(ops)*replays)
	if r < 0.95 || p < 0.95 || ty < 0.95 {
		t.Errorf("traffic only: below target: recall %.3f precision %.3f types %.3f (want >= 0.95 each)", r, p, ty)
	}
	// Sparse traffic: three calls per operation.
	sparse := NewObserver(Options{SampleAboveRPS: -1})
	replay(sparse, ops, 3, now, 3)
	measure(t, "traffic only, 3 calls per operation", ops, sparse.Peek(), len(ops)*3)

	// As the gateway runs it: registry literals pinned.
	obs := NewObserver(Options{SampleAboveRPS: -1})
	pinRegistry(obs, cat)
	replay(obs, ops, 1, now, replays)
	r, p, ty = measure(t, "registry pinned", ops, obs.Peek(), len(ops)*replays)
	if r < 0.99 || p < 0.99 || ty < 0.95 {
		t.Errorf("registry pinned: below target: recall %.3f precision %.3f types %.3f", r, p, ty)
	}

	// Shadow: with unregistered traffic mixed in, the report names every
	// unregistered endpoint and no registered one.
	replay(obs, shadowOps, 2, now, replays)
	rep, err := Analyze(t.Context(), cat, obs.Peek(), now, 30*24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[mk]bool{}
	for _, o := range ops {
		want[mk{o.method, shapeOf(apiBases[o.api], o)}] = true
	}
	shadows := map[mk]bool{}
	falseShadow := 0
	for _, s := range rep.Shadow {
		shadows[mk{s.Method, Shape(s.Template)}] = true
		if want[mk{s.Method, Shape(s.Template)}] {
			falseShadow++
			t.Errorf("registered operation reported as shadow: %s %s", s.Method, s.Template)
		}
	}
	found := 0
	for _, o := range shadowOps {
		if shadows[mk{o.method, shapeOf(apiBases[o.api], o)}] {
			found++
		} else {
			t.Errorf("unregistered endpoint %s %s not reported as shadow", o.method, shapeOf(apiBases[o.api], o))
		}
	}
	t.Logf("shadow: %d/%d unregistered endpoints reported, %d shadow rows, %d registered reported as shadow, %d orphans",
		found, len(shadowOps), len(rep.Shadow), falseShadow, len(rep.Orphans))
	if len(rep.Shadow) != len(shadowOps) {
		t.Errorf("shadow rows = %d, want %d: %+v", len(rep.Shadow), len(shadowOps), rep.Shadow)
	}
	if len(rep.Orphans) != 0 {
		t.Errorf("%d orphans after every operation was called: %+v", len(rep.Orphans), rep.Orphans[:min(5, len(rep.Orphans))])
	}
}

func pinRegistry(o *Observer, c *Catalog) {
	byHost := map[string][]string{}
	for _, op := range c.Ops {
		byHost[op.Host] = append(byHost[op.Host], op.Template)
	}
	o.SetPins(byHost)
}
