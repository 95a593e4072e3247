package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

const apisConfig = `version: 1
listen:
  https: 127.0.0.1:8443
  tls: {dev_cert: true}
apis:
  - name: orders
    version: v1
    owner: {team: payments, contact: sec@example.com}
    exposure: partner
    criticality: high
    reviewed: {on: 2020-01-01, by: appsec}
    lifecycle: deprecated
    deprecation: {on: 2026-01-01, sunset: 2099-01-01, successor: v2}
    data_flows: [{system: erp, direction: write, data: orders}]
    spec: spec.yaml
    upstream: http://127.0.0.1:9000
    route: {base_path: /orders/v1}
    policies: [{operation: "*", public: true}]
  - name: orders
    version: v2
    owner: {team: payments, contact: sec@example.com}
    spec: spec.yaml
    upstream: http://127.0.0.1:9000
    route: {base_path: /orders/v2}
    policies: [{operation: "*", public: true}]
`

const apisSpec = `openapi: 3.1.0
info: {title: orders, version: "1"}
paths:
  /orders/{id}:
    get: {operationId: getOrder, responses: {"200": {description: ok}}}
`

func TestAPIsListAndShow(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{"gatehouse.yaml": apisConfig, "spec.yaml": apisSpec} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "gatehouse.yaml")

	out, _, err := run(t, "apis", "list", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "deprecated") || !strings.Contains(lines[1], "2020-01-01 (overdue)") ||
		!strings.Contains(lines[1], "2099-01-01") || !strings.Contains(lines[2], "active") {
		t.Errorf("apis list:\n%s", out)
	}

	out, _, err = run(t, "apis", "list", "-c", cfg, "--lifecycle", "deprecated", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ APIs []apiView }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.APIs) != 1 || list.APIs[0].Successor != "v2" ||
		!list.APIs[0].ReviewDue || list.APIs[0].Criticality != "high" {
		t.Errorf("apis list --lifecycle deprecated: %v %s", err, out)
	}

	out, _, err = run(t, "apis", "show", "orders", "v1", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"orders v1", "payments <sec@example.com>", "Sunset:", "2099-01-01", "Successor:", "write erp orders", "GET  /orders/v1/orders/{id}  getOrder"} {
		if !strings.Contains(out, want) {
			t.Errorf("apis show lacks %q:\n%s", want, out)
		}
	}
	if _, _, err := run(t, "apis", "show", "billing", "-c", cfg); err == nil || !strings.Contains(err.Error(), "no API billing") {
		t.Errorf("unknown API: %v", err)
	}
}

// TestAPIsLiveTraffic: with an audit trail configured, apis list and show
// carry requests, consumers and error rates per window from the index.
func TestAPIsLiveTraffic(t *testing.T) {
	dir := t.TempDir()
	skey, _, err := audit.GenerateKey("cli-test")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "audit.key"), skey+"\n")
	cfgText := apisConfig + "store: {sqlite: data/g.db}\naudit: {dir: audit, signing_key_file: audit.key}\n"
	for name, text := range map[string]string{"gatehouse.yaml": cfgText, "spec.yaml": apisSpec} {
		write(t, filepath.Join(dir, name), text)
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "data", "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var entries []store.AuditEntry
	for i := range 10 {
		e := store.AuditEntry{Seq: uint64(i + 1), Time: now.Add(-time.Duration(i) * time.Hour), Type: "request", API: "orders", Version: "v2",
			Consumer: []string{"a", "b"}[i%2], Operation: "getOrder", Status: 200, Decision: "allow", Record: "{}"}
		if i == 0 {
			e.Status, e.Decision = 502, "error"
		}
		if i >= 8 {
			e.Time = now.Add(-72 * time.Hour) // inside 7d, outside 24h
		}
		entries = append(entries, e)
	}
	if err := st.InsertAudit(t.Context(), entries, store.AuditPosition{LogID: "n", Segment: 1, Offset: 1, Seq: 10}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfg := filepath.Join(dir, "gatehouse.yaml")
	out, errOut, err := run(t, "apis", "show", "orders", "v2", "-c", cfg)
	if err != nil {
		t.Fatalf("%v %s", err, errOut)
	}
	for _, want := range []string{"Traffic:", "24h     8         2          0       1       12.5%", "7d      10        2          0       1       10.0%"} {
		if !strings.Contains(out, want) {
			t.Errorf("apis show lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, "apis", "list", "-c", cfg, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ APIs []apiView }
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.APIs[1].Traffic["30d"].Requests != 10 || list.APIs[0].Traffic != nil {
		t.Errorf("apis list -o json traffic: %v %s", err, out)
	}
}
