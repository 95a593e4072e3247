package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/server"
)

// fakeJWT is JWT-shaped (JSON header and payload, random-looking
// signature); the gateway refuses it, and it must not reach the log.
var fakeJWT = func() string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT","kid":"e2e"}`)) + "." +
		enc([]byte(`{"sub":"mallory","aud":"orders","exp":4102444800}`)) + "." +
		enc([]byte("not-a-real-signature-but-long-enough-to-look-like-one-0123456789"))
}()

// TestRedactionGatewayLog sends requests carrying every kind of secret and
// personal data through the real TLS listener and checks the gateway's
// whole log (debug level: the request lines include URI and headers)
// holds none of them verbatim, while still recording the requests.
func TestRedactionGatewayLog(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders-backend")
	g := startIdentityGateway(t, idConfig{
		Top:  "redaction:\n  detectors: [email, pan, iban, ssn]\n  headers: [X-Partner-Secret]\n",
		APIs: policyAPIs(orders.URL(), orders.URL(), "apikey")[:1],
	})
	key, _ := g.issueKey(t, "acme-billing", nil, 0)
	const (
		cookieSecret  = "sess-9f8e7d6c5b4a3210"
		partnerSecret = "ps-0a1b2c3d4e5f"
		email         = "jane.doe@example.com"
		email2        = "john.smith@corp.example"
		card          = "4111111111111111"
		iban          = "DE89370400440532013000"
	)
	rows := []struct {
		name, path string
		header     []string
		want       int
	}{
		{"bearer JWT refused", "/orders/v1/orders", []string{"Authorization", "Bearer " + fakeJWT}, http.StatusUnauthorized},
		{"API key in X-API-Key", "/orders/v1/orders", []string{"X-API-Key", key}, http.StatusOK},
		{"API key in the query", "/orders/v1/orders?api_key=" + key, nil, http.StatusBadRequest},
		{"cookie and partner secret", "/orders/v1/orders", []string{"X-API-Key", key, "Cookie", "session=" + cookieSecret, "X-Partner-Secret", partnerSecret}, http.StatusOK},
		{"email in the path, card and iban in the query", "/orders/v1/customers/" + strings.Replace(email, "@", "%40", 1) +
			"/orders?card=" + card + "&contact=" + email2 + "&iban=" + iban, []string{"X-API-Key", key}, 0},
	}
	for _, r := range rows {
		resp, _ := g.call(t, http.MethodGet, r.path, r.header...)
		if r.want != 0 && resp.StatusCode != r.want {
			t.Errorf("%s: status %d, want %d", r.name, resp.StatusCode, r.want)
		}
	}

	logs := g.logs.String()
	secrets := map[string]string{
		"JWT": fakeJWT, "API key": key, "API key secret part": key[21:], "cookie": cookieSecret,
		"partner secret": partnerSecret, "email": email, "email (encoded)": strings.Replace(email, "@", "%40", 1),
		"email in query": email2, "card": card, "IBAN": iban,
	}
	for name, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("%s reached the gateway log verbatim", name)
		}
	}
	// The requests were logged (so the test can fail), with marks in place
	// of the secrets, and the request IDs and methods kept.
	if n := strings.Count(logs, "msg=request "); n < len(rows) {
		t.Errorf("%d request lines logged, want %d", n, len(rows))
	}
	for _, kind := range []string{"[REDACTED:jwt:", "[REDACTED:apikey:", "[REDACTED:header:", "[REDACTED:email:", "[REDACTED:pan:", "[REDACTED:iban:"} {
		if !strings.Contains(logs, kind) {
			t.Errorf("no %s mark in the log", kind)
		}
	}
	if !strings.Contains(logs, "method=GET") || !strings.Contains(logs, "reason=key_in_query") {
		t.Error("redaction removed more than secrets: method or deny reason missing")
	}
}

// TestEncryptionAtRestGateway runs the gateway on a SQLite store with a
// data key: the sensitive columns hold sealed values only; restarting with
// no key or another key fails at startup with a message naming
// store.encryption; restarting with the right key serves again.
func TestEncryptionAtRestGateway(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders-backend")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "data.key")
	k1, _ := seal.GenerateKey()
	if err := os.WriteFile(keyFile, []byte(k1+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := idConfig{APIs: policyAPIs(orders.URL(), orders.URL(), "apikey")[:1]}
	withKey := strings.Replace(cfg.render(), "store:\n  sqlite: data/gatehouse.db\n",
		"store:\n  sqlite: data/gatehouse.db\n  encryption: {key_file: data.key}\n", 1)
	if withKey == cfg.render() {
		t.Fatal("store block not found in the rendered config")
	}
	g := startGatewayIn(t, dir, withKey)
	key, id := g.issueKey(t, "acme-billing", nil, 0)
	if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", key); s != http.StatusOK {
		t.Fatalf("key refused: %d", s)
	}
	svc := g.srv.Gateway().Keys()
	if err := svc.Revoke(context.Background(), id, "leaked in ticket 4711"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	g.srv.Close()

	db, err := sql.Open("sqlite", filepath.Join(dir, "data", "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var createdBy, why, ip string
	var sealedCount int
	eventually(t, 5*time.Second, "last use recorded", func() bool {
		err = db.QueryRow(`SELECT created_by, revoked_why, last_used_ip FROM credentials WHERE id = ?`, id).Scan(&createdBy, &why, &ip)
		return err == nil && ip != "" // the touch is asynchronous
	})
	_ = db.QueryRow(`SELECT count(*) FROM revocations WHERE reason LIKE 'gh1:%'`).Scan(&sealedCount)
	for col, v := range map[string]string{"created_by": createdBy, "revoked_why": why, "last_used_ip": ip} {
		// The plaintexts must not survive; compare the ciphertext part only:
		// the random hex key ID ahead of it may contain "4711" or "e2e".
		body := v
		if i := strings.LastIndexByte(v, ':'); i >= 0 {
			body = v[i+1:]
		}
		if !seal.IsSealed(v) || v == "e2e" || strings.Contains(body, "127.0.0.1") || strings.Contains(body, "ticket") || strings.Contains(body, "4711") {
			t.Errorf("credentials.%s holds %q, want a sealed value", col, v)
		}
	}
	if sealedCount == 0 {
		t.Error("revocations.reason holds no sealed value")
	}
	db.Close()

	k2, _ := seal.GenerateKey()
	for name, text := range map[string]string{
		"no key":    cfg.render(),
		"other key": strings.Replace(withKey, "key_file: data.key", "key_file: other.key", 1),
	} {
		if err := os.WriteFile(filepath.Join(dir, "other.key"), []byte(k2), 0o600); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "gatehouse.yaml")
		writeFileAtomic(t, path, text)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		srv, err := server.Start(ctx, server.Options{ConfigPath: path, Env: testEnv})
		cancel()
		if err == nil {
			srv.Close()
			t.Errorf("%s: the gateway started on a store it cannot decrypt", name)
			continue
		}
		if !strings.Contains(err.Error(), "store.encryption") || strings.Contains(err.Error(), k1) {
			t.Errorf("%s: startup error %q does not name store.encryption (or leaks the key)", name, err)
		}
	}
	g2 := startGatewayIn(t, dir, withKey)
	if s := g2.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", key); s != http.StatusUnauthorized {
		t.Errorf("revoked key after restart: %d, want 401", s)
	}
	if bytes.Contains([]byte(g2.logs.String()), []byte("4711")) {
		t.Error("revocation reason reached the log")
	}
}

// TestRedactionMarksStableAcrossReplicas starts two gateways sharing
// redaction.key_file: the same secret gets the same mark in both logs, so
// an incident can be followed across replicas without the secret. A key
// file that is too short stops startup.
func TestRedactionMarksStableAcrossReplicas(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders-backend")
	shared := filepath.Join(t.TempDir(), "redaction.key")
	if err := os.WriteFile(shared, []byte("0123456789abcdef0123456789abcdef-shared-mark-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := idConfig{Top: "redaction:\n  key_file: " + shared + "\n", APIs: policyAPIs(orders.URL(), orders.URL(), "apikey")[:1]}
	marks := make([]string, 2)
	for i := range marks {
		g := startIdentityGateway(t, cfg)
		g.call(t, http.MethodGet, "/orders/v1/orders", "Authorization", "Bearer "+fakeJWT)
		logs := g.logs.String()
		i0 := strings.Index(logs, "[REDACTED:jwt:")
		if i0 < 0 || strings.Contains(logs, fakeJWT) {
			t.Fatalf("gateway %d: no JWT mark, or the JWT itself, in the log", i)
		}
		marks[i] = logs[i0 : i0+len("[REDACTED:jwt:")+7]
	}
	if marks[0] != marks[1] {
		t.Errorf("marks differ across replicas sharing a key: %s vs %s", marks[0], marks[1])
	}

	short := filepath.Join(t.TempDir(), "short.key")
	os.WriteFile(short, []byte("too-short"), 0o600)
	dir := t.TempDir()
	bad := idConfig{Top: "redaction:\n  key_file: " + short + "\n", APIs: cfg.APIs}
	path := filepath.Join(dir, "gatehouse.yaml")
	writeFileAtomic(t, path, bad.render())
	os.MkdirAll(filepath.Join(dir, "specs"), 0o755)
	copyFile(t, filepath.Join("testdata", "specs", "orders-v1.yaml"), filepath.Join(dir, "specs", "orders-v1.yaml"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, server.Options{ConfigPath: path, Env: testEnv})
	if err == nil {
		srv.Close()
		t.Fatal("the gateway started with a 9-byte redaction key")
	}
	if !strings.Contains(err.Error(), "redaction.key_file") {
		t.Errorf("startup error %q does not name redaction.key_file", err)
	}
}
