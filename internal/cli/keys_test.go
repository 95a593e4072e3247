package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn/apikey"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

const keysTestPepper = "cli-test-pepper-0123456789abcdef0123456789"

// keysConfig writes a config with two partners' consumers, a private pepper
// file and a SQLite store in a temp dir, and returns the config path.
func keysConfig(t *testing.T) (cfgPath, dbPath string) {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "pepper"), keysTestPepper+"\n")
	dbPath = filepath.Join(dir, "data", "g.db")
	cfgPath = filepath.Join(dir, "gatehouse.yaml")
	write(t, cfgPath, `version: 1
listen: {tls: {dev_cert: true}}
store: {sqlite: data/g.db}
identity: {pepper_file: pepper, key_max_ttl: 60d}
partners:
  - {name: acme}
  - {name: globex}
consumers:
  - {name: acme-billing, partner: acme, scopes: ["orders:read", "orders:write"], roles: [billing]}
  - {name: acme-reports, partner: acme, scopes: ["orders:read"]}
  - {name: globex-app, partner: globex, scopes: ["orders:read"]}
`)
	return cfgPath, dbPath
}

var keyRe = regexp.MustCompile(`^` + apikey.Pattern + `$`)

func issueKey(t *testing.T, cfg string, args ...string) (key string, stderr string) {
	t.Helper()
	out, errOut, err := run(t, append([]string{"keys", "issue", "-c", cfg}, args...)...)
	if err != nil {
		t.Fatalf("issue %v: %v\n%s", args, err, errOut)
	}
	key = strings.TrimSpace(out)
	if !keyRe.MatchString(key) {
		t.Fatalf("stdout is not exactly one key: %q", out)
	}
	return key, errOut
}

func showJSON(t *testing.T, cfg, id string) apikey.CredentialView {
	t.Helper()
	out, errOut, err := run(t, "keys", "show", "-c", cfg, id, "-o", "json")
	if err != nil {
		t.Fatalf("show: %v\n%s", err, errOut)
	}
	var v apikey.CredentialView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("show -o json: %v\n%s", err, out)
	}
	return v
}

func TestKeysLifecycle(t *testing.T) {
	cfg, dbPath := keysConfig(t)
	key, errOut := issueKey(t, cfg, "--consumer", "acme-billing", "--scopes", "orders:read", "--ttl", "30d", "--created-by", "alice")
	id, err := apikey.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cannot show it again", id, "acme-billing", "partner acme", "orders:read"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("issue stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, key) {
		t.Error("the key is printed twice")
	}

	v := showJSON(t, cfg, id)
	if v.Status != apikey.StatusActive || v.Consumer != "acme-billing" || v.Partner != "acme" ||
		strings.Join(v.Scopes, ",") != "orders:read" || v.CreatedBy != "alice" || v.ExpiresAt == nil ||
		v.ExpiresAt.Sub(v.CreatedAt) != 30*24*time.Hour {
		t.Fatalf("show: %+v", v)
	}
	// Pasting the whole key to show works and uses only its ID.
	if v2 := showJSON(t, cfg, key); v2.ID != id {
		t.Fatalf("show by key: %+v", v2)
	}
	out, _, err := run(t, "keys", "show", "-c", cfg, id)
	if err != nil || !strings.Contains(out, "status:") || !strings.Contains(out, "acme-billing") {
		t.Fatalf("show text: %v\n%s", err, out)
	}

	// The key the CLI printed authenticates against the same store.
	authenticate(t, cfg, key, "")

	// list shows it (text and JSON), never a hash.
	out, _, err = run(t, "keys", "list", "-c", cfg)
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "LAST USED") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _, err = run(t, "keys", "list", "-c", cfg, "-o", "json", "--partner", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(out), "hash") {
		t.Fatalf("list -o json mentions a hash:\n%s", out)
	}
	var views []apikey.CredentialView
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 || views[0].ID != id {
		t.Fatalf("list -o json: %v %s", err, out)
	}

	// rotate: a new key is printed once; the old one is rotating.
	out, errOut, err = run(t, "keys", "rotate", "-c", cfg, id, "--overlap", "2h")
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, errOut)
	}
	newKey := strings.TrimSpace(out)
	if !keyRe.MatchString(newKey) || newKey == key || !strings.Contains(errOut, "keeps working until") {
		t.Fatalf("rotate output %q / %q", out, errOut)
	}
	newID, _ := apikey.Parse(newKey)
	if v := showJSON(t, cfg, id); v.Status != apikey.StatusRotating {
		t.Fatalf("old key after rotate: %+v", v)
	}
	if v := showJSON(t, cfg, newID); strings.Join(v.Scopes, ",") != "orders:read" || v.Consumer != "acme-billing" {
		t.Fatalf("new key: %+v", v)
	}
	authenticate(t, cfg, key, "")    // inside the overlap
	authenticate(t, cfg, newKey, "") // the replacement

	// revoke by ID: revoked on the credential and on the revocation list.
	out, _, err = run(t, "keys", "revoke", "-c", cfg, newID, "--reason", "leaked")
	if err != nil || !strings.Contains(out, "Revoked "+newID) {
		t.Fatalf("revoke: %v %s", err, out)
	}
	if v := showJSON(t, cfg, newID); v.Status != apikey.StatusRevoked || v.RevokedReason != "leaked" {
		t.Fatalf("after revoke: %+v", v)
	}
	onRevocationList(t, dbPath, newID)
	authenticate(t, cfg, newKey, apikey.ReasonRevoked)

	// The default list hides revoked keys; --all shows them.
	out, _, _ = run(t, "keys", "list", "-c", cfg)
	if strings.Contains(out, newID) {
		t.Fatalf("revoked key listed without --all:\n%s", out)
	}
	out, _, _ = run(t, "keys", "list", "-c", cfg, "--all")
	if !strings.Contains(out, newID) || !strings.Contains(out, "revoked") {
		t.Fatalf("list --all:\n%s", out)
	}
}

func TestKeysRevokeConsumerAndPartner(t *testing.T) {
	cfg, _ := keysConfig(t)
	issueKey(t, cfg, "--consumer", "acme-billing")
	issueKey(t, cfg, "--consumer", "acme-billing")
	reportsKey, _ := issueKey(t, cfg, "--consumer", "acme-reports")
	globexKey, _ := issueKey(t, cfg, "--consumer", "globex-app")

	out, _, err := run(t, "keys", "revoke", "-c", cfg, "--consumer", "acme-billing")
	if err != nil || !strings.Contains(out, "Revoked 2 credential(s) of consumer acme-billing") {
		t.Fatalf("revoke --consumer: %v %s", err, out)
	}
	out, _, err = run(t, "keys", "revoke", "-c", cfg, "--partner", "acme", "--reason", "breach")
	if err != nil || !strings.Contains(out, "Revoked 1 credential(s) of partner acme") {
		t.Fatalf("revoke --partner: %v %s", err, out)
	}
	id, _ := apikey.Parse(reportsKey)
	if v := showJSON(t, cfg, id); v.Status != apikey.StatusRevoked || v.RevokedReason != "breach" {
		t.Fatalf("partner key after revoke: %+v", v)
	}
	authenticate(t, cfg, globexKey, "") // another partner is untouched
	if _, _, err := run(t, "keys", "revoke", "-c", cfg, "--partner", "initech"); err == nil || !strings.Contains(err.Error(), "unknown partner") {
		t.Fatalf("unknown partner: %v", err)
	}
}

// Attacker's (and fat-finger's) table for the CLI: each must fail with a
// message that says what is wrong, and print no key.
func TestKeysRefusals(t *testing.T) {
	cfg, _ := keysConfig(t)
	key, _ := issueKey(t, cfg, "--consumer", "acme-reports")
	id, _ := apikey.Parse(key)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"scope the consumer lacks", []string{"keys", "issue", "-c", cfg, "--consumer", "acme-reports", "--scopes", "orders:read,orders:write"}, "does not hold scope"},
		{"ttl over key_max_ttl", []string{"keys", "issue", "-c", cfg, "--consumer", "acme-reports", "--ttl", "61d"}, "exceeds identity.key_max_ttl (60d)"},
		{"unknown consumer", []string{"keys", "issue", "-c", cfg, "--consumer", "mallory"}, "unknown consumer"},
		{"no consumer", []string{"keys", "issue", "-c", cfg}, "--consumer is required"},
		{"bad ttl", []string{"keys", "issue", "-c", cfg, "--consumer", "acme-reports", "--ttl", "soon"}, "write e.g. 30d"},
		{"bad output", []string{"keys", "list", "-c", cfg, "-o", "yaml"}, "want text or json"},
		{"revoke two targets", []string{"keys", "revoke", "-c", cfg, id, "--consumer", "acme-reports"}, "exactly one"},
		{"revoke no target", []string{"keys", "revoke", "-c", cfg}, "exactly one"},
		{"show unknown", []string{"keys", "show", "-c", cfg, "0000000000000000"}, "no credential with ID"},
		{"rotate unknown", []string{"keys", "rotate", "-c", cfg, "0000000000000000"}, "no credential with ID"},
		{"missing config", []string{"keys", "list", "-c", filepath.Join(t.TempDir(), "none.yaml")}, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(out, apikey.Prefix) {
				t.Fatalf("printed a key on failure: %q", out)
			}
		})
	}
}

// A pepper file others can read is refused for issuing, but listing and
// revoking (which never hash) still work.
func TestKeysPepperFileMustBePrivate(t *testing.T) {
	cfg, _ := keysConfig(t)
	key, _ := issueKey(t, cfg, "--consumer", "acme-reports")
	id, _ := apikey.Parse(key)
	if err := os.Chmod(filepath.Join(filepath.Dir(cfg), "pepper"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "keys", "issue", "-c", cfg, "--consumer", "acme-reports")
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("issue with a readable pepper: %v", err)
	}
	if _, _, err := run(t, "keys", "list", "-c", cfg); err != nil {
		t.Fatalf("list without pepper: %v", err)
	}
	if _, _, err := run(t, "keys", "revoke", "-c", cfg, id); err != nil {
		t.Fatalf("revoke without pepper: %v", err)
	}
}

func TestKeysIssueJSONAndNoPlaintextAtRest(t *testing.T) {
	cfg, dbPath := keysConfig(t)
	out, _, err := run(t, "keys", "issue", "-c", cfg, "--consumer", "globex-app", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Key        string                `json:"key"`
		Credential apikey.CredentialView `json:"credential"`
		Warning    string                `json:"warning"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || !keyRe.MatchString(doc.Key) || doc.Warning == "" ||
		doc.Credential.Partner != "globex" || doc.Credential.ExpiresAt.Sub(doc.Credential.CreatedAt) != 60*24*time.Hour {
		t.Fatalf("issue -o json: %v %s", err, out)
	}
	// Neither the key nor its secret part is anywhere in the database files.
	files, _ := filepath.Glob(dbPath + "*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(doc.Key[apikey.KeyLen-49:])) {
			t.Fatalf("%s holds the key's secret in plaintext", f)
		}
	}
}

func TestKeysHelpHasExamples(t *testing.T) {
	for _, sub := range []string{"issue", "list", "show", "rotate", "revoke"} {
		out, _, err := run(t, "keys", sub, "--help")
		if err != nil || !strings.Contains(out, "Examples:") || !strings.Contains(out, "gatehouse keys "+sub) {
			t.Errorf("keys %s --help: %v\n%s", sub, err, out)
		}
	}
}

// authenticate opens the config and store the CLI used and checks key the
// way the gateway will: wantReason "" means accepted.
func authenticate(t *testing.T, cfgPath, key, wantReason string) {
	t.Helper()
	ctx := context.Background()
	loaded, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, loaded.Config.Store.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := apikey.ServiceFromConfig(loaded.Config, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := svc.NewAuthenticator(apikey.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r := httptest.NewRequest("GET", "https://gw.example/x", nil)
	r.Header.Set("X-API-Key", key)
	p, err := a.Authenticate(r)
	if wantReason == "" {
		if err != nil || p == nil {
			t.Fatalf("key refused: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), wantReason) {
		t.Fatalf("key: %v, want %s", err, wantReason)
	}
}

func onRevocationList(t *testing.T, dbPath, id string) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	on, err := st.IsRevoked(context.Background(), store.RevokeCredential, id, time.Now())
	if err != nil || !on {
		t.Fatalf("%s not on the revocation list: %v", id, err)
	}
}

func TestKeysRevokeJTI(t *testing.T) {
	cfg, dbPath := keysConfig(t)
	out, errOut, err := run(t, "keys", "revoke", "-c", cfg, "--jti", "tok-123", "--until", "2h", "--reason", "leaked")
	if err != nil || !strings.Contains(out, "Revoked token tok-123 until") {
		t.Fatalf("revoke --jti: %v %s %s", err, out, errOut)
	}
	st, err := sqlite.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if ok, err := st.IsRevoked(context.Background(), store.RevokeToken, "tok-123", now); err != nil || !ok {
		t.Fatalf("jti not on the revocation list: %v %v", ok, err)
	}
	if ok, _ := st.IsRevoked(context.Background(), store.RevokeToken, "tok-123", now.Add(3*time.Hour)); ok {
		t.Fatal("jti entry outlives --until")
	}
	for _, args := range [][]string{
		{"--jti", "x", "--until", "nonsense"},
		{"--jti", "x", "--consumer", "acme-billing"},
	} {
		if _, _, err := run(t, append([]string{"keys", "revoke", "-c", cfg}, args...)...); err == nil {
			t.Errorf("revoke %v accepted", args)
		}
	}
}
