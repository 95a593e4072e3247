package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/store"
)

func TestLogsKeygenVerify(t *testing.T) {
	keys := t.TempDir()
	if _, _, err := run(t, "logs", "keygen", "--name", "gh-audit", "--out", keys); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(keys, "gh-audit.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signer key file: %v, %v", fi, err)
	}
	// keygen never overwrites a key.
	if _, _, err := run(t, "logs", "keygen", "--name", "gh-audit", "--out", keys); err == nil {
		t.Fatal("keygen overwrote an existing key")
	}
	signer, err := audit.LoadSigner(filepath.Join(keys, "gh-audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := audit.Open(audit.Options{Dir: dir, Mode: audit.Durable, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.WriteRequest(&audit.Record{Time: time.Now(), RequestID: "r" + string(rune('a'+i)), Status: 200, Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(keys, "gh-audit.pub")
	out, _, err := run(t, "logs", "verify", dir, "--key", pub)
	if err != nil || !strings.HasPrefix(out, "OK: 5 records in 1 segments") {
		t.Fatalf("verify intact log: %q, %v", out, err)
	}
	// Tamper: change one record's status.
	seg := filepath.Join(dir, "audit-00000001.jsonl")
	b, _ := os.ReadFile(seg)
	if err := os.WriteFile(seg, []byte(strings.Replace(string(b), `"request_id":"rb"`, `"request_id":"rB"`, 1)), 0o640); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "logs", "verify", dir, "--key", pub)
	var ee ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "record 2 was modified") {
		t.Fatalf("verify tampered log: %q, %v", out, err)
	}
	if _, _, err := run(t, "logs", "verify", dir); err == nil {
		t.Fatal("verify without --key succeeded")
	}
}

func TestLogsQuery(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "gh.db")
	cfg := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfg, []byte("version: 1\nlisten: {tls: {dev_cert: true}}\nstore: {sqlite: "+db+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := server.OpenStore(ctx, config.Store{SQLite: db})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = st.InsertAudit(ctx, []store.AuditEntry{
		{Seq: 1, Time: now, Type: "request", Consumer: "acme-billing", API: "orders", Status: 200, Decision: "allow", Record: `{"seq":1}`},
		{Seq: 2, Time: now, Type: "request", Consumer: "globex", API: "orders", Status: 403, Decision: "deny", Stage: "authz", Reason: "scope", Record: `{"seq":2}`},
	}, store.AuditPosition{LogID: "n1", Segment: 1, Offset: 10, Seq: 2})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "logs", "query", "-c", cfg, "--decision", "deny", "--since", "1h", "--json")
	if err != nil || !strings.Contains(out, `"seq": 2`) || strings.Contains(out, `"seq": 1`) {
		t.Fatalf("query --json: %q, %v", out, err)
	}
	out, _, err = run(t, "logs", "query", "-c", cfg, "--consumer", "acme-billing")
	if err != nil || !strings.Contains(out, "acme-billing") || strings.Contains(out, "globex") {
		t.Fatalf("query table: %q, %v", out, err)
	}
	if _, _, err := run(t, "logs", "query", "-c", cfg, "--status", "abc"); err == nil {
		t.Fatal("a bad --status was accepted")
	}
}
