package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn/apikey"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

const testAdminToken = "admin-token-0123456789abcdef"

type keysFixture struct {
	srv  *httptest.Server
	svc  *apikey.Service
	auth *apikey.Authenticator
	db   *sqlite.Store
}

func newKeysFixture(t *testing.T, withKeys bool) *keysFixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := apikey.NewService(apikey.Options{Store: db, Pepper: []byte("admin-test-pepper-0123456789abcdef0123"),
		MaxTTL: 30 * 24 * time.Hour, Revoker: apikey.StoreRevoker{Store: db}, Revocations: db,
		Consumers: []config.Consumer{
			{Name: "acme-billing", Partner: "acme", Scopes: []string{"orders:read", "orders:write"}},
			{Name: "acme-reports", Partner: "acme", Scopes: []string{"orders:read"}},
			{Name: "globex-app", Partner: "globex", Scopes: []string{"orders:read"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := svc.NewAuthenticator(apikey.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	o := Options{Metrics: metrics.New("test"), Store: db, Ready: func() bool { return true }}
	if withKeys {
		o.Keys = svc
	}
	s := New(o)
	s.SetToken(testAdminToken)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &keysFixture{srv: srv, svc: svc, auth: auth, db: db}
}

func (f *keysFixture) do(t *testing.T, method, path, body, token string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, v
}

func (f *keysFixture) admin(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	code, _, v := f.do(t, method, path, body, testAdminToken)
	return code, v
}

func (f *keysFixture) authenticates(t *testing.T, key string) error {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://gw.example/x", nil)
	r.Header.Set("Authorization", "ApiKey "+key)
	_, err := f.auth.Authenticate(r)
	return err
}

var adminKeyRe = regexp.MustCompile(`^` + apikey.Pattern + `$`)

func issueViaAdmin(t *testing.T, f *keysFixture, body string) (key, id string) {
	t.Helper()
	code, v := f.admin(t, "POST", "/v1/keys", body)
	if code != http.StatusCreated {
		t.Fatalf("issue %s: %d %v", body, code, v)
	}
	key, _ = v["key"].(string)
	if !adminKeyRe.MatchString(key) {
		t.Fatalf("issue returned key %q", key)
	}
	cred := v["credential"].(map[string]any)
	return key, cred["id"].(string)
}

// Every key endpoint is behind the admin token.
func TestKeyEndpointsNeedTheAdminToken(t *testing.T) {
	f := newKeysFixture(t, true)
	for _, ep := range [][2]string{
		{"POST", "/v1/keys"}, {"GET", "/v1/keys"}, {"GET", "/v1/keys/abc"}, {"POST", "/v1/keys/abc/rotate"},
		{"POST", "/v1/keys/abc/revoke"}, {"POST", "/v1/consumers/acme-billing/revoke"}, {"POST", "/v1/partners/acme/revoke"},
	} {
		for _, tok := range []string{"", "wrong-token-0123456789"} {
			code, hdr, v := f.do(t, ep[0], ep[1], `{"consumer":"acme-billing"}`, tok)
			if code != http.StatusUnauthorized || hdr.Get("Content-Type") != "application/problem+json" || v["key"] != nil {
				t.Errorf("%s %s with token %q: %d %v", ep[0], ep[1], tok, code, v)
			}
		}
	}
	if n, _ := f.db.ListCredentials(context.Background(), store.CredentialFilter{IncludeRevoked: true}); len(n) != 0 {
		t.Fatal("an unauthenticated request issued a key")
	}
}

func TestKeyEndpointsAbsentWithoutService(t *testing.T) {
	f := newKeysFixture(t, false)
	code, v := f.admin(t, "POST", "/v1/keys", `{"consumer":"acme-billing"}`)
	if code != http.StatusNotFound || v["key"] != nil {
		t.Fatalf("without Keys: %d %v", code, v)
	}
}

// A DynamicKeys without a service answers 503, then serves once one exists.
func TestDynamicKeys(t *testing.T) {
	f := newKeysFixture(t, false)
	var current KeyService
	s := New(Options{Metrics: metrics.New("test"), Store: f.db, Keys: DynamicKeys(func() KeyService { return current })})
	s.SetToken(testAdminToken)
	srv := httptest.NewServer(s)
	defer srv.Close()
	f.srv = srv
	code, v := f.admin(t, "POST", "/v1/keys", `{"consumer":"acme-billing"}`)
	if code != http.StatusServiceUnavailable || v["type"] != "https://gatehouse.dev/problems/keys-unavailable" {
		t.Fatalf("without a service: %d %v", code, v)
	}
	current = f.svc
	issueViaAdmin(t, f, `{"consumer":"acme-billing"}`)
	if code, v := f.admin(t, "GET", "/v1/keys", ""); code != 200 || len(v["keys"].([]any)) != 1 {
		t.Fatalf("list through DynamicKeys: %d %v", code, v)
	}
}

func TestKeysAdminLifecycle(t *testing.T) {
	f := newKeysFixture(t, true)
	code, hdr, v := f.do(t, "POST", "/v1/keys", `{"consumer":"acme-billing","scopes":["orders:read"],"ttl":"7d","created_by":"alice"}`, testAdminToken)
	if code != http.StatusCreated || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("issue: %d %v %v", code, hdr, v)
	}
	key := v["key"].(string)
	cred := v["credential"].(map[string]any)
	id := cred["id"].(string)
	if cred["consumer"] != "acme-billing" || cred["partner"] != "acme" || cred["created_by"] != "admin-api:alice" ||
		cred["status"] != "active" || v["warning"] == nil || hdr.Get("Location") != "/v1/keys/"+id {
		t.Fatalf("issue response %v", v)
	}
	if _, ok := cred["hash"]; ok {
		t.Fatal("the credential view carries a hash")
	}
	if err := f.authenticates(t, key); err != nil {
		t.Fatalf("issued key refused: %v", err)
	}

	code, v = f.admin(t, "GET", "/v1/keys/"+id, "")
	if code != 200 || v["id"] != id || v["key"] != nil || strings.Contains(toJSON(v), key[len(key)-49:]) {
		t.Fatalf("get: %d %v", code, v)
	}
	code, v = f.admin(t, "GET", "/v1/keys?partner=acme", "")
	if code != 200 || len(v["keys"].([]any)) != 1 {
		t.Fatalf("list: %d %v", code, v)
	}
	code, v = f.admin(t, "GET", "/v1/keys?partner=globex", "")
	if code != 200 || len(v["keys"].([]any)) != 0 {
		t.Fatalf("list other partner: %d %v", code, v)
	}

	code, v = f.admin(t, "POST", "/v1/keys/"+id+"/rotate", `{"overlap":"1h"}`)
	if code != http.StatusCreated || v["replaces"] != id || v["old_key_ends_at"] == nil {
		t.Fatalf("rotate: %d %v", code, v)
	}
	if ends, err := time.Parse(time.RFC3339Nano, v["old_key_ends_at"].(string)); err != nil || time.Until(ends) < 59*time.Minute || time.Until(ends) > time.Hour {
		t.Fatalf("old_key_ends_at %v: %v", v["old_key_ends_at"], err)
	}
	newKey := v["key"].(string)
	newID := v["credential"].(map[string]any)["id"].(string)
	if err := f.authenticates(t, newKey); err != nil {
		t.Fatal(err)
	}
	if err := f.authenticates(t, key); err != nil {
		t.Fatalf("old key refused inside the overlap: %v", err)
	}
	if _, v := f.admin(t, "GET", "/v1/keys/"+id, ""); v["status"] != apikey.StatusRotating {
		t.Fatalf("old key status %v", v["status"])
	}

	code, v = f.admin(t, "POST", "/v1/keys/"+newID+"/revoke", `{"reason":"leaked"}`)
	if code != 200 || v["status"] != "revoked" {
		t.Fatalf("revoke: %d %v", code, v)
	}
	if err := f.authenticates(t, newKey); err == nil {
		t.Fatal("revoked key still authenticates")
	}
	on, err := f.db.IsRevoked(context.Background(), store.RevokeCredential, newID, time.Now())
	if err != nil || !on {
		t.Fatalf("revoked key not on the revocation list: %v", err)
	}

	// Revoke a consumer, then the partner: counts, and the other partner untouched.
	issueViaAdmin(t, f, `{"consumer":"acme-reports"}`)
	gKey, _ := issueViaAdmin(t, f, `{"consumer":"globex-app"}`)
	code, v = f.admin(t, "POST", "/v1/consumers/acme-reports/revoke", `{"reason":"offboarded"}`)
	if code != 200 || v["revoked"] != float64(1) || v["consumer"] != "acme-reports" {
		t.Fatalf("revoke consumer: %d %v", code, v)
	}
	code, v = f.admin(t, "POST", "/v1/partners/acme/revoke", "")
	if code != 200 || v["revoked"] != float64(1) { // the old key still inside its overlap
		t.Fatalf("revoke partner: %d %v", code, v)
	}
	if err := f.authenticates(t, gKey); err != nil {
		t.Fatalf("other partner's key refused: %v", err)
	}
	code, v = f.admin(t, "GET", "/v1/keys?all=true", "")
	if code != 200 || len(v["keys"].([]any)) != 4 {
		t.Fatalf("list all: %d %v", code, v)
	}
}

// Bad requests: each refused with the right problem and no key.
func TestKeysAdminRefusals(t *testing.T) {
	f := newKeysFixture(t, true)
	_, id := issueViaAdmin(t, f, `{"consumer":"acme-reports"}`)
	if code, v := f.admin(t, "POST", "/v1/keys/"+id+"/revoke", ""); code != 200 {
		t.Fatalf("revoke: %d %v", code, v)
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		typ                      string
	}{
		{"scope not held", "POST", "/v1/keys", `{"consumer":"acme-reports","scopes":["orders:write"]}`, 422, "invalid-request"},
		{"ttl over max", "POST", "/v1/keys", `{"consumer":"acme-reports","ttl":"31d"}`, 422, "invalid-request"},
		{"bad ttl", "POST", "/v1/keys", `{"consumer":"acme-reports","ttl":"forever"}`, 422, "invalid-request"},
		{"no consumer", "POST", "/v1/keys", `{}`, 422, "invalid-request"},
		{"unknown consumer", "POST", "/v1/keys", `{"consumer":"mallory"}`, 404, "consumer-not-found"},
		{"misspelt field", "POST", "/v1/keys", `{"consumer":"acme-reports","scope":["orders:read"]}`, 400, "bad-request"},
		{"not JSON", "POST", "/v1/keys", `consumer=acme-reports`, 400, "bad-request"},
		{"two objects", "POST", "/v1/keys", `{"consumer":"acme-reports"}{}`, 400, "bad-request"},
		{"empty issue body", "POST", "/v1/keys", ``, 400, "bad-request"},
		{"huge body", "POST", "/v1/keys", `{"consumer":"` + strings.Repeat("a", 70<<10) + `"}`, 400, "bad-request"},
		{"unknown key", "GET", "/v1/keys/0000000000000000", "", 404, "credential-not-found"},
		{"rotate unknown", "POST", "/v1/keys/0000000000000000/rotate", "", 404, "credential-not-found"},
		{"rotate revoked", "POST", "/v1/keys/" + id + "/rotate", "", 409, "credential-not-rotatable"},
		{"negative overlap", "POST", "/v1/keys/" + id + "/rotate", `{"overlap":"-1h"}`, 422, "invalid-request"},
		{"revoke unknown", "POST", "/v1/keys/0000000000000000/revoke", "", 404, "credential-not-found"},
		{"unknown consumer revoke", "POST", "/v1/consumers/mallory/revoke", "", 404, "consumer-not-found"},
		{"unknown partner revoke", "POST", "/v1/partners/initech/revoke", "", 404, "partner-not-found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, v := f.do(t, tc.method, tc.path, tc.body, testAdminToken)
			if code != tc.status || hdr.Get("Content-Type") != "application/problem+json" ||
				v["type"] != "https://gatehouse.dev/problems/"+tc.typ || v["key"] != nil {
				t.Fatalf("%d %s %v, want %d %s", code, hdr.Get("Content-Type"), v, tc.status, tc.typ)
			}
		})
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
