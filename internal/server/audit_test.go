package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
)

// auditKeys writes a signer and verifier key into a temp dir.
func auditKeys(t *testing.T) (keyFile, pubFile string) {
	t.Helper()
	dir := t.TempDir()
	skey, vkey, err := audit.GenerateKey("e2e-audit")
	if err != nil {
		t.Fatal(err)
	}
	keyFile, pubFile = filepath.Join(dir, "audit.key"), filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(keyFile, []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return keyFile, pubFile
}

func auditExtra(dir, mode, keyFile string) string {
	return fmt.Sprintf("audit:\n  dir: %s\n  mode: %s\n  signing_key_file: %s\n  checkpoint_every: 3\n  index_interval: 100ms\n", dir, mode, keyFile)
}

// readRecords returns every record line in the audit dir as a map.
func readRecords(t *testing.T, dir string) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	var out []map[string]any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if audit.IsCheckpoint(sc.Bytes()) {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, m)
		}
	}
	return out
}

func findRecord(recs []map[string]any, key, val string) map[string]any {
	for _, r := range recs {
		if r[key] == val {
			return r
		}
	}
	return nil
}

func TestAuditTrailRecordsRequestsAndAdminActions(t *testing.T) {
	for _, mode := range []string{"durable", "buffered"} {
		t.Run(mode, func(t *testing.T) {
			up := newEchoUpstream(t, "orders")
			keyFile, pubFile := auditKeys(t)
			adir := filepath.Join(t.TempDir(), "audit")
			g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}, Extra: auditExtra(adir, mode, keyFile)})

			// Allowed, with a secret in the query; denied at routing.
			req, _ := http.NewRequest("GET", g.base()+"/orders/v1/orders/42?access_token=s3cr3t-value&expand=items", nil)
			req.Header.Set("User-Agent", "audit-e2e\t\"forged\":1")
			resp, err := g.h1.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			allowedID := resp.Header.Get("X-Request-Id")
			if resp.StatusCode != 200 {
				t.Fatalf("allowed request: %d", resp.StatusCode)
			}
			resp, _ = g.get(t, g.h1, "/nowhere")
			deniedID := resp.Header.Get("X-Request-Id")
			if resp.StatusCode != 404 {
				t.Fatalf("unrouted request: %d", resp.StatusCode)
			}
			if r, _ := g.adminDo(t, "POST", "/v1/reload", adminToken); r.StatusCode != 200 {
				t.Fatalf("reload: %d", r.StatusCode)
			}

			// The index catches up and the admin API serves it.
			var listed struct {
				Records []map[string]any `json:"records"`
			}
			eventually(t, 10*time.Second, "audit index has the request", func() bool {
				r, body := g.adminDo(t, "GET", "/v1/audit?api=orders&decision=allow", adminToken)
				if r.StatusCode != 200 || json.Unmarshal(body, &listed) != nil {
					return false
				}
				return findRecord(listed.Records, "request_id", allowedID) != nil
			})
			if r, _ := g.adminDo(t, "GET", "/v1/audit", ""); r.StatusCode != 401 {
				t.Fatalf("audit query without the admin token: %d", r.StatusCode)
			}
			if r, _ := g.adminDo(t, "GET", "/v1/audit?status=abc", adminToken); r.StatusCode != 422 {
				t.Fatalf("bad status filter: %d", r.StatusCode)
			}

			g.srv.Close() // flushes and signs a final checkpoint
			recs := readRecords(t, adir)
			a := findRecord(recs, "request_id", allowedID)
			if a == nil {
				t.Fatalf("no record for the allowed request in %v", recs)
			}
			for k, want := range map[string]any{"type": "request", "api": "orders", "version": "v1", "method": "GET",
				"path": "/orders/v1/orders/42?access_token&expand", "path_template": "/orders/v1/orders/{orderId}",
				"status": float64(200), "decision": "allow", "client_ip": "127.0.0.1", "user_agent": "audit-e2e\t\"forged\":1"} {
				if a[k] != want {
					t.Errorf("allowed record %s = %#v, want %#v", k, a[k], want)
				}
			}
			if a["bytes_out"].(float64) <= 0 {
				t.Errorf("bytes_out = %v", a["bytes_out"])
			}
			d := findRecord(recs, "request_id", deniedID)
			if d == nil || d["decision"] != "deny" || d["stage"] != "route" || d["reason"] != "not_found" || d["status"] != float64(404) {
				t.Errorf("denied record = %v", d)
			}
			adm := findRecord(recs, "type", "admin")
			if adm == nil || adm["action"] != "POST /v1/reload" || adm["target"] != "config" || adm["actor"] != "admin-token" {
				t.Errorf("admin record = %v", adm)
			}
			raw, _ := os.ReadFile(filepath.Join(adir, "audit-00000001.jsonl"))
			if bytes.Contains(raw, []byte("s3cr3t-value")) {
				t.Fatal("a query value reached the audit log")
			}
			v, err := audit.LoadVerifier(pubFile)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := audit.Verify(adir, v)
			if err != nil || rep.Broken != nil || rep.Signed != rep.Records || len(rep.Notices) != 0 {
				t.Fatalf("verify after a clean stop: %+v, %v", rep, err)
			}
		})
	}
}

func TestAuditAdminKeyActionsRecorded(t *testing.T) {
	up := newEchoUpstream(t, "orders")
	keyFile, _ := auditKeys(t)
	adir := filepath.Join(t.TempDir(), "audit")
	extra := auditExtra(adir, "durable", keyFile) + "identity:\n  pepper: e2e-pepper-0123456789abcdef0123456789\nconsumers:\n  - {name: acme-billing, scopes: [orders:read]}\n"
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}, Extra: extra})
	issue := func() string {
		req, _ := http.NewRequest("POST", "http://"+g.srv.AdminAddr()+"/v1/keys", strings.NewReader(`{"consumer":"acme-billing"}`))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := g.admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Key        string `json:"key"`
			Credential struct {
				ID string `json:"id"`
			} `json:"credential"`
		}
		if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&out) != nil {
			t.Fatalf("issue: %d", resp.StatusCode)
		}
		return out.Credential.ID + " " + out.Key
	}
	idKey := strings.Fields(issue())
	id, key := idKey[0], idKey[1]
	if r, _ := g.adminDo(t, "POST", "/v1/keys/"+id+"/rotate", adminToken); r.StatusCode != 201 {
		t.Fatalf("rotate: %d", r.StatusCode)
	}
	if r, _ := g.adminDo(t, "POST", "/v1/keys/"+id+"/revoke", adminToken); r.StatusCode != 200 {
		t.Fatalf("revoke: %d", r.StatusCode)
	}
	g.srv.Close()
	raw, _ := os.ReadFile(filepath.Join(adir, "audit-00000001.jsonl"))
	if bytes.Contains(raw, []byte(key)) {
		t.Fatal("an issued API key reached the audit log")
	}
	recs := readRecords(t, adir)
	want := map[string]bool{"POST /v1/keys": false, "POST /v1/keys/{id}/rotate": false, "POST /v1/keys/{id}/revoke": false}
	for _, r := range recs {
		if r["type"] != "admin" {
			continue
		}
		act, _ := r["action"].(string)
		if _, ok := want[act]; ok {
			want[act] = true
			if r["after"] == nil {
				t.Errorf("%s: no after state", act)
			}
			if act != "POST /v1/keys" && r["before"] == nil {
				t.Errorf("%s: no before state", act)
			}
		}
	}
	for act, seen := range want {
		if !seen {
			t.Errorf("no admin record for %s", act)
		}
	}
}

// A log that cannot be written (here: every write gets ENOSPC from
// /dev/full) raises the health metric; durable mode refuses requests with
// 503 instead of serving them unrecorded, buffered mode serves on.
func TestAuditUnwritableLog(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("/dev/full: %v", err)
	}
	for _, tc := range []struct {
		mode string
		want int
	}{{"durable", 503}, {"buffered", 200}} {
		t.Run(tc.mode, func(t *testing.T) {
			up := newEchoUpstream(t, "orders")
			keyFile, _ := auditKeys(t)
			adir := filepath.Join(t.TempDir(), "audit")
			if err := os.MkdirAll(adir, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/full", filepath.Join(adir, "audit-00000001.jsonl")); err != nil {
				t.Fatal(err)
			}
			g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}, Extra: auditExtra(adir, tc.mode, keyFile)})
			resp, body := g.get(t, g.h1, "/orders/v1/orders/1")
			if tc.mode == "durable" {
				assertProblem(t, resp, body, 503, "unavailable")
			}
			eventually(t, 5*time.Second, "audit health metric drops", func() bool {
				return metricValue(g.scrape(t), "gatehouse_audit_healthy") == 0
			})
			before := up.count()
			resp, body = g.get(t, g.h1, "/orders/v1/orders/2")
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.mode == "durable" && up.count() != before {
				t.Fatal("durable mode forwarded a request while the audit log was unwritable")
			}
		})
	}
}

// A configured exporter ships the gateway's records from the log.
func TestAuditFileExporterShipsRecords(t *testing.T) {
	up := newEchoUpstream(t, "orders")
	keyFile, _ := auditKeys(t)
	adir := filepath.Join(t.TempDir(), "audit")
	out := filepath.Join(t.TempDir(), "shipped.jsonl")
	extra := auditExtra(adir, "buffered", keyFile) + fmt.Sprintf("  index: \"off\"\n  exporters:\n    - {type: file, path: %s}\n", out)
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}, Extra: extra})
	resp, _ := g.get(t, g.h1, "/orders/v1/orders/7")
	id := resp.Header.Get("X-Request-Id")
	eventually(t, 10*time.Second, "the record reaches the exported file", func() bool {
		b, _ := os.ReadFile(out)
		return bytes.Contains(b, []byte(`"request_id":"`+id+`"`))
	})
}

// TestAuditRecordRedactedAndWAF: the record's path goes through the
// redaction engine (an e-mail in a path segment is masked), and a WAF block
// carries the matched CRS rule IDs and the anomaly score.
func TestAuditRecordRedactedAndWAF(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders")
	keyFile, _ := auditKeys(t)
	adir := filepath.Join(t.TempDir(), "audit")
	api := ordersAPI(up.URL())
	api.APIExtra = "    waf: {mode: block, paranoia: 1}\n"
	g := startGateway(t, gwConfig{APIs: []apiConfig{api}, Extra: auditExtra(adir, "durable", keyFile) + "redaction: {detectors: [email]}\n"})

	resp, _ := g.get(t, g.h1, "/orders/v1/orders/alice.smith@example.net")
	emailID := resp.Header.Get("X-Request-Id")
	resp, _ = g.get(t, g.h1, "/orders/v1/orders?q=1%27%20UNION%20SELECT%20password%20FROM%20users--")
	blockedID := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != 403 {
		t.Fatalf("SQL injection: %d, want 403", resp.StatusCode)
	}
	g.srv.Close()
	recs := readRecords(t, adir)
	e := findRecord(recs, "request_id", emailID)
	if e == nil || strings.Contains(fmt.Sprint(e["path"]), "alice.smith@example.net") || !strings.Contains(fmt.Sprint(e["path"]), "[REDACTED:email:") {
		t.Errorf("record of the e-mail path: %v", e)
	}
	b := findRecord(recs, "request_id", blockedID)
	if b == nil || b["stage"] != "waf" {
		t.Fatalf("blocked record: %v", b)
	}
	rules, _ := b["waf_rules"].([]any)
	anoms, _ := b["anomalies"].([]any)
	if len(rules) == 0 || len(anoms) != 1 || !strings.HasPrefix(fmt.Sprint(anoms[0]), "waf_block_score_") {
		t.Errorf("blocked record carries waf_rules %v, anomalies %v", b["waf_rules"], b["anomalies"])
	}
}

// TestDriftFromReportMode: requests validation lets through in report mode,
// and responses report-mode filtering passes with undocumented fields, are
// flagged in the audit trail, and `gatehouse discover report` lists them as
// drift of their operations.
func TestDriftFromReportMode(t *testing.T) {
	t.Parallel()
	up := newLeakyUpstream(t)
	keyFile, _ := auditKeys(t)
	adir := filepath.Join(t.TempDir(), "audit")
	extra := "    validate: {mode: enforce, operations: {updateOrder: {mode: report}}}\n    response: {filter: report}\n"
	g := startGateway(t, gwConfig{APIs: []apiConfig{shopAPI(up.srv.URL, extra)}, Extra: auditExtra(adir, "buffered", keyFile)})
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	for range 2 {
		// The leaky upstream adds fields getOrder's schema does not document.
		resp, body := g.do(t, g.h2, "GET", "/shop/v1/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", reqOpts{})
		if resp.StatusCode != 200 || !strings.Contains(string(body), "password_hash") {
			t.Fatalf("report-mode filtering must pass the body as is: %d %s", resp.StatusCode, body)
		}
	}
	for range 3 {
		resp, body := g.do(t, g.h2, "PATCH", "/shop/v1/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", reqOpts{header: jsonCT, body: strings.NewReader(`{"note":5}`)})
		if resp.StatusCode != 200 {
			t.Fatalf("report mode: %d %s", resp.StatusCode, body)
		}
	}
	resp, _ := g.do(t, g.h2, "PATCH", "/shop/v1/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", reqOpts{header: jsonCT, body: strings.NewReader(`{"note":"fine"}`)})
	if resp.StatusCode != 200 {
		t.Fatalf("valid request: %d", resp.StatusCode)
	}
	text, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cliCfg := filepath.Join(g.dir, "cli.yaml")
	if err := os.WriteFile(cliCfg, []byte(strings.Replace(string(text), "  token: ${GH_TEST_ADMIN_TOKEN}\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	type drift struct {
		API, Version, Operation string
		RequestViolations       int64 `json:"request_violations"`
		ResponseViolations      int64 `json:"response_violations"`
	}
	var rep struct{ Drift []drift }
	byOp := map[string]drift{}
	eventually(t, 10*time.Second, "discover report lists the drift", func() bool {
		out, _, err := runCLI(t, "discover", "report", "-c", cliCfg, "--json")
		if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
			return false
		}
		byOp = map[string]drift{}
		for _, d := range rep.Drift {
			byOp[d.API+"@"+d.Version+"/"+d.Operation] = d
		}
		return byOp["shop@v1/updateOrder"].RequestViolations == 3 && byOp["shop@v1/getOrder"].ResponseViolations == 2
	})
	if len(byOp) != 2 || byOp["shop@v1/updateOrder"].ResponseViolations != 0 || byOp["shop@v1/getOrder"].RequestViolations != 0 {
		t.Errorf("drift = %+v", rep.Drift)
	}
}
