package storetest

import (
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

var auditTests = []test{
	{"insert-query-position", testAuditInsertQuery},
	{"idempotent-resume", testAuditIdempotent},
	{"logs-of-two-nodes", testAuditTwoLogs},
	{"governance-stats", testAuditStats},
}

func auditEntry(seq uint64, consumer, partner, api, decision string, status int, d time.Duration) store.AuditEntry {
	return store.AuditEntry{Seq: seq, Time: at(d), Type: "request", RequestID: "r" + strconv.FormatUint(seq, 10),
		Consumer: consumer, Partner: partner, API: api, Operation: "op", Method: "GET", Path: "/x?q",
		ClientIP: "127.0.0.1", Status: status, Decision: decision, LatencyUS: 12, Record: `{"seq":` + strconv.FormatUint(seq, 10) + `}`}
}

func testAuditInsertQuery(t *testing.T, s store.Store) {
	ctx := t.Context()
	if p, err := s.AuditPosition(ctx, "node-a"); err != nil || p != (store.AuditPosition{LogID: "node-a"}) {
		t.Fatalf("empty position = %+v, %v", p, err)
	}
	entries := []store.AuditEntry{
		auditEntry(1, "acme-billing", "acme", "orders", "allow", 200, 0),
		auditEntry(2, "acme-billing", "acme", "orders", "deny", 403, time.Minute),
		auditEntry(3, "globex", "", "orders", "allow", 200, 2*time.Minute),
		auditEntry(4, "globex", "", "users", "deny", 401, 3*time.Minute),
	}
	pos := store.AuditPosition{LogID: "node-a", Segment: 1, Offset: 1234, Seq: 4}
	if err := s.InsertAudit(ctx, entries, pos); err != nil {
		t.Fatal(err)
	}
	if p, err := s.AuditPosition(ctx, "node-a"); err != nil || p != pos {
		t.Fatalf("position = %+v, %v; want %+v", p, err, pos)
	}
	cases := []struct {
		name string
		q    store.AuditQuery
		want []uint64
	}{
		{"all newest first", store.AuditQuery{}, []uint64{4, 3, 2, 1}},
		{"consumer", store.AuditQuery{Consumer: "acme-billing"}, []uint64{2, 1}},
		{"partner", store.AuditQuery{Partner: "acme"}, []uint64{2, 1}},
		{"api", store.AuditQuery{API: "users"}, []uint64{4}},
		{"decision", store.AuditQuery{Decision: "deny"}, []uint64{4, 2}},
		{"status", store.AuditQuery{Status: 403}, []uint64{2}},
		{"since inclusive", store.AuditQuery{Since: at(time.Minute)}, []uint64{4, 3, 2}},
		{"until exclusive", store.AuditQuery{Until: at(2 * time.Minute)}, []uint64{2, 1}},
		{"combined", store.AuditQuery{Consumer: "globex", Decision: "allow"}, []uint64{3}},
		{"limit", store.AuditQuery{Limit: 1}, []uint64{4}},
		{"no match", store.AuditQuery{Consumer: "nobody"}, nil},
	}
	for _, tc := range cases {
		got, err := s.QueryAudit(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var seqs []uint64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if len(seqs) != len(tc.want) {
			t.Fatalf("%s: got %v, want %v", tc.name, seqs, tc.want)
		}
		for i := range seqs {
			if seqs[i] != tc.want[i] {
				t.Fatalf("%s: got %v, want %v", tc.name, seqs, tc.want)
			}
		}
	}
	got, _ := s.QueryAudit(ctx, store.AuditQuery{Limit: 1})
	e := got[0]
	w := entries[3]
	w.Time, w.LogID = want(w.Time), "node-a"
	if e != w {
		t.Fatalf("round trip:\n got %+v\nwant %+v", e, w)
	}
}

func testAuditIdempotent(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := []store.AuditEntry{auditEntry(1, "c", "", "a", "allow", 200, 0), auditEntry(2, "c", "", "a", "allow", 200, 0)}
	if err := s.InsertAudit(ctx, a, store.AuditPosition{LogID: "n", Segment: 1, Offset: 10, Seq: 2}); err != nil {
		t.Fatal(err)
	}
	// A resumed indexer may hand over a record again: it is stored once.
	b := []store.AuditEntry{auditEntry(2, "c", "", "a", "allow", 200, 0), auditEntry(3, "c", "", "a", "allow", 200, 0)}
	if err := s.InsertAudit(ctx, b, store.AuditPosition{LogID: "n", Segment: 2, Offset: 5, Seq: 3}); err != nil {
		t.Fatal(err)
	}
	got, err := s.QueryAudit(ctx, store.AuditQuery{})
	if err != nil || len(got) != 3 {
		t.Fatalf("got %d records, %v; want 3", len(got), err)
	}
	if p, _ := s.AuditPosition(ctx, "n"); p != (store.AuditPosition{LogID: "n", Segment: 2, Offset: 5, Seq: 3}) {
		t.Fatalf("position %+v", p)
	}
}

// Every node has its own log numbered from 1: a shared index keeps both
// nodes' records and positions apart.
func testAuditTwoLogs(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, node := range []string{"node-a", "node-b"} {
		es := []store.AuditEntry{auditEntry(1, node, "", "a", "allow", 200, 0), auditEntry(2, node, "", "a", "allow", 200, time.Second)}
		if err := s.InsertAudit(ctx, es, store.AuditPosition{LogID: node, Segment: 1, Offset: 99, Seq: 2}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.QueryAudit(ctx, store.AuditQuery{})
	if err != nil || len(got) != 4 {
		t.Fatalf("got %d records, %v; want 4 (2 per node)", len(got), err)
	}
	for _, e := range got {
		if e.LogID != e.Consumer {
			t.Fatalf("record %+v filed under the wrong log", e)
		}
	}
	if p, _ := s.AuditPosition(ctx, "node-b"); p.Seq != 2 || p.Offset != 99 {
		t.Fatalf("node-b position %+v", p)
	}
	if p, _ := s.AuditPosition(ctx, "node-c"); p != (store.AuditPosition{LogID: "node-c"}) {
		t.Fatalf("unknown log position %+v", p)
	}
}

// testAuditStats: the governance aggregates over the index.
func testAuditStats(t *testing.T, s store.Store) {
	ctx := t.Context()
	e := func(seq uint64, consumer, api, version, op, decision, stage, reason string, status int, d time.Duration) store.AuditEntry {
		en := auditEntry(seq, consumer, "", api, decision, status, d)
		en.Version, en.Operation, en.Stage, en.Reason, en.CredentialID = version, op, stage, reason, "k-"+consumer
		if consumer == "acme-billing" {
			en.Partner = "acme"
		}
		return en
	}
	entries := []store.AuditEntry{
		e(1, "acme-billing", "orders", "v1", "getOrder", "allow", "", "", 200, 0),
		e(2, "acme-billing", "orders", "v1", "getOrder", "allow", "", "", 200, time.Minute),
		e(3, "acme-billing", "orders", "v1", "listOrders", "allow", "", "", 200, 2*time.Minute),
		e(4, "globex", "orders", "v1", "getOrder", "deny", "authz", "forbidden", 403, 3*time.Minute),
		e(5, "globex", "orders", "v2", "getOrder", "error", "", "upstream_timeout", 504, 4*time.Minute),
		e(6, "", "", "", "", "deny", "route", "not_found", 404, 5*time.Minute),
		e(7, "", "", "", "", "deny", "route", "not_found", 404, 6*time.Minute),
		e(8, "old", "orders", "v1", "getOrder", "allow", "", "", 200, -time.Hour), // before the window
	}
	entries[5].Path, entries[6].Path = "/archive/v1/x", "/archive/v1/x"
	entries[1].Record = `{"seq":2,"anomalies":["spec_drift_request"]}`
	entries[2].Record = `{"seq":3,"anomalies":["waf_detect_score_3","spec_drift_request"]}`
	entries[3].Record = `{"seq":4,"note":"spec_drift_request_not_a_flag"}`
	if err := s.InsertAudit(ctx, entries, store.AuditPosition{LogID: "stats", Segment: 1, Offset: 1, Seq: 8}); err != nil {
		t.Fatal(err)
	}
	calls, err := s.AuditCalls(ctx, at(0))
	mustNoErr(t, err, "calls")
	got := map[string]int64{}
	for _, c := range calls {
		got[c.Consumer+"/"+c.Partner+"/"+c.CredentialID+"/"+c.API+"@"+c.Version+"/"+c.Operation] = c.Calls
		if c.Operation == "getOrder" && c.Consumer == "acme-billing" {
			equalTime(t, "last call", c.Last, want(at(time.Minute)))
		}
	}
	if len(got) != 2 || got["acme-billing/acme/k-acme-billing/orders@v1/getOrder"] != 2 || got["acme-billing/acme/k-acme-billing/orders@v1/listOrders"] != 1 {
		t.Errorf("allowed calls = %v", got)
	}
	un, err := s.AuditUnrouted(ctx, at(0), 10)
	mustNoErr(t, err, "unrouted")
	if len(un) != 1 || un[0].Path != "/archive/v1/x" || un[0].Calls != 2 {
		t.Errorf("unrouted = %+v", un)
	}
	flagged, err := s.AuditFlagged(ctx, at(0), "spec_drift_request")
	mustNoErr(t, err, "flagged")
	if len(flagged) != 2 || flagged[0].Operation != "getOrder" || flagged[0].Calls != 1 || flagged[1].Operation != "listOrders" || flagged[1].Calls != 1 {
		t.Errorf("flagged = %+v", flagged)
	}
	stats, err := s.AuditAPIStats(ctx, at(0))
	mustNoErr(t, err, "api stats")
	if len(stats) != 2 || stats[0] != (store.AuditAPIStat{API: "orders", Version: "v1", Requests: 4, Consumers: 2, Denied: 1}) ||
		stats[1] != (store.AuditAPIStat{API: "orders", Version: "v2", Requests: 1, Consumers: 1, Errors: 1}) {
		t.Errorf("api stats = %+v", stats)
	}
}
