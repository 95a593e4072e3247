package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
)

// secretTable is a ClientSecrets over a fixed table. The real one (hashed
// credentials in the store) is exercised end to end through the gateway.
type secretTable map[string]string

func (s secretTable) VerifyClientSecret(_ context.Context, consumer, secret string) (string, error) {
	want, ok := s[consumer]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return "", authn.Fail("Basic", "bad_secret")
	}
	return "cs-" + consumer, nil
}

type fixture struct {
	srv       *Server
	now       time.Time
	clientKey *ecdsa.PrivateKey
	cfg       config.TokenEndpoint
	consumers []config.Consumer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{now: time.Unix(1_800_000_000, 0)}
	dir := t.TempDir()
	f.clientKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, err := publicJWK(&SigningKey{ID: "client-1", PublicKey: &f.clientKey.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []JWK{jwk}})
	jwksFile := filepath.Join(dir, "client.jwks")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	f.cfg = config.TokenEndpoint{Enabled: true, Issuer: "https://gw.example", Audience: "https://gw.example",
		TTL: config.Duration(15 * time.Minute), Algorithm: "ES256", KeyDir: filepath.Join(dir, "keys"),
		RotateEvery: config.Duration(24 * time.Hour), Overlap: config.Duration(time.Hour)}
	consumers := []config.Consumer{
		{Name: "acme-billing", Partner: "acme", Scopes: []string{"orders:read", "orders:write"}},
		{Name: "globex-app", Partner: "globex", Scopes: []string{"orders:read"}, JWKSFile: jwksFile},
	}
	f.consumers = consumers
	f.srv, err = NewServer(f.cfg, consumers, Options{
		Secrets: secretTable{"acme-billing": "s3cret-acme-0123456789"},
		Now:     func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) post(form url.Values, mutate func(*http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", TokenPath, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mutate != nil {
		mutate(r)
	}
	w := httptest.NewRecorder()
	f.srv.ServeToken(w, r)
	return w
}

func (f *fixture) assertion(t *testing.T, mutate func(*jwt.RegisteredClaims, *jwt.Token)) string {
	t.Helper()
	c := jwt.RegisteredClaims{Issuer: "globex-app", Subject: "globex-app", Audience: jwt.ClaimStrings{"https://gw.example/oauth2/token"},
		ExpiresAt: jwt.NewNumericDate(f.now.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(f.now), ID: randomID()}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, &c)
	tok.Header["kid"] = "client-1"
	if mutate != nil {
		mutate(&c, tok)
	}
	s, err := tok.SignedString(f.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return url.QueryEscape(string(b[:]))
}

func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}

func TestTokenEndpoint(t *testing.T) {
	f := newFixture(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range cc {
			v[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	tests := []struct {
		name    string
		form    url.Values
		mut     func(*http.Request)
		status  int
		errCode string
		scope   string
	}{
		{"basic secret: all consumer scopes", cc, basic("acme-billing", "s3cret-acme-0123456789"), 200, "", "orders:read orders:write"},
		{"narrowed scope", with("scope", "orders:read"), basic("acme-billing", "s3cret-acme-0123456789"), 200, "", "orders:read"},
		{"widened scope refused", with("scope", "orders:read admin"), basic("acme-billing", "s3cret-acme-0123456789"), 400, "invalid_scope", ""},
		{"secret in form", with("client_id", "acme-billing", "client_secret", "s3cret-acme-0123456789"), nil, 200, "", "orders:read orders:write"},
		{"wrong secret", cc, basic("acme-billing", "nope"), 401, "invalid_client", ""},
		{"unknown client", cc, basic("who", "s3cret-acme-0123456789"), 401, "invalid_client", ""},
		{"no client auth", cc, nil, 401, "invalid_client", ""},
		{"two auth methods", with("client_id", "acme-billing", "client_secret", "s3cret-acme-0123456789"), basic("acme-billing", "s3cret-acme-0123456789"), 400, "invalid_request", ""},
		{"wrong grant", url.Values{"grant_type": {"password"}}, basic("acme-billing", "s3cret-acme-0123456789"), 400, "unsupported_grant_type", ""},
		{"repeated parameter", url.Values{"grant_type": {"client_credentials", "client_credentials"}}, basic("acme-billing", "s3cret-acme-0123456789"), 400, "invalid_request", ""},
		{"secret in query string", cc, func(r *http.Request) { r.URL.RawQuery = "client_secret=x" }, 400, "invalid_request", ""},
		{"json body", cc, func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }, 400, "invalid_request", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := f.post(tc.form, tc.mut)
			if w.Code != tc.status {
				t.Fatalf("status %d, body %s", w.Code, w.Body)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Fatal("token responses must not be cached")
			}
			var body map[string]any
			json.Unmarshal(w.Body.Bytes(), &body)
			if tc.errCode != "" {
				if body["error"] != tc.errCode {
					t.Fatalf("error %v, want %s", body["error"], tc.errCode)
				}
				if strings.Contains(w.Body.String(), "s3cret") {
					t.Fatal("response echoes the secret")
				}
				return
			}
			if body["token_type"] != "Bearer" || body["scope"] != tc.scope || body["expires_in"].(float64) != 900 {
				t.Fatalf("body %v", body)
			}
		})
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	f := newFixture(t)
	form := func(a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {assertionType}, "client_assertion": {a}}
	}
	good := f.assertion(t, nil)
	if w := f.post(form(good), nil); w.Code != 200 {
		t.Fatalf("good assertion: %d %s", w.Code, w.Body)
	}
	if w := f.post(form(good), nil); w.Code != 401 {
		t.Fatalf("replayed assertion accepted: %d", w.Code)
	}
	bad := map[string]func(*jwt.RegisteredClaims, *jwt.Token){
		"wrong audience":     func(c *jwt.RegisteredClaims, _ *jwt.Token) { c.Audience = jwt.ClaimStrings{"https://other"} },
		"expired":            func(c *jwt.RegisteredClaims, _ *jwt.Token) { c.ExpiresAt = jwt.NewNumericDate(f.now.Add(-time.Hour)) },
		"too long lived":     func(c *jwt.RegisteredClaims, _ *jwt.Token) { c.ExpiresAt = jwt.NewNumericDate(f.now.Add(time.Hour)) },
		"no jti":             func(c *jwt.RegisteredClaims, _ *jwt.Token) { c.ID = "" },
		"sub differs":        func(c *jwt.RegisteredClaims, _ *jwt.Token) { c.Subject = "acme-billing" },
		"other client's iss": func(c *jwt.RegisteredClaims, _ *jwt.Token) { c.Issuer, c.Subject = "acme-billing", "acme-billing" },
		"unknown kid":        func(_ *jwt.RegisteredClaims, t *jwt.Token) { t.Header["kid"] = "other" },
	}
	for name, mut := range bad {
		t.Run(name, func(t *testing.T) {
			if w := f.post(form(f.assertion(t, mut)), nil); w.Code != 401 {
				t.Fatalf("accepted: %d %s", w.Code, w.Body)
			}
		})
	}
	t.Run("signed by another key", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		c := jwt.RegisteredClaims{Issuer: "globex-app", Subject: "globex-app", Audience: jwt.ClaimStrings{"https://gw.example"},
			ExpiresAt: jwt.NewNumericDate(f.now.Add(time.Minute)), ID: "x1"}
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
		tok.Header["kid"] = "client-1"
		s, _ := tok.SignedString(other)
		if w := f.post(form(s), nil); w.Code != 401 {
			t.Fatalf("forged assertion accepted: %d", w.Code)
		}
	})
	t.Run("alg none", func(t *testing.T) {
		c := jwt.RegisteredClaims{Issuer: "globex-app", Subject: "globex-app", Audience: jwt.ClaimStrings{"https://gw.example"},
			ExpiresAt: jwt.NewNumericDate(f.now.Add(time.Minute)), ID: "x2"}
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, c)
		tok.Header["kid"] = "client-1"
		s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if w := f.post(form(s), nil); w.Code != 401 {
			t.Fatalf("alg none accepted: %d", w.Code)
		}
	})
}

func TestIssuedTokenVerifies(t *testing.T) {
	f := newFixture(t)
	w := f.post(url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}, basic("acme-billing", "s3cret-acme-0123456789"))
	var body struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(w.Body.Bytes(), &body)
	v := NewVerifier(f.cfg, f.srv.Ring(), f.consumers, func() time.Time { return f.now })
	req := func(tok string) *http.Request {
		r := httptest.NewRequest("GET", "/x", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	p, err := v.Authenticate(req(body.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	if p.Consumer != "acme-billing" || p.Partner != "acme" || !p.HasScope("orders:read") || p.HasScope("orders:write") || p.TokenID == "" || p.Kind != authn.KindToken {
		t.Fatalf("principal %+v", p)
	}
	// The token names the secret it was bought with: revoking that
	// credential (revocation kind "credential") also ends the token.
	if p.CredentialID != "cs-acme-billing" {
		t.Fatalf("credential ID %q, want the client secret's", p.CredentialID)
	}
	// Tampered payload.
	parts := strings.Split(body.AccessToken, ".")
	forged := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]
	if _, err := v.Authenticate(req(forged)); err == nil {
		t.Fatal("tampered token accepted")
	}
	// A token of another issuer is not ours: the next authenticator may try.
	other := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "https://idp"})
	foreign, _ := other.SignedString([]byte("k"))
	if _, err := v.Authenticate(req(foreign)); !errors.Is(err, authn.ErrNoCredential) {
		t.Fatalf("foreign token: %v", err)
	}
	// HS256 with our issuer: refused, not "not mine".
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "https://gw.example", Audience: jwt.ClaimStrings{"https://gw.example"},
		ExpiresAt: jwt.NewNumericDate(f.now.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(f.now)})
	hss, _ := hs.SignedString([]byte("guess"))
	var fail *authn.Failure
	if _, err := v.Authenticate(req(hss)); !errors.As(err, &fail) {
		t.Fatalf("HS256 token with our issuer: %v", err)
	}
	// Expiry.
	f.now = f.now.Add(16 * time.Minute)
	if _, err := v.Authenticate(req(body.AccessToken)); !errors.As(err, &fail) || fail.Reason != "expired" {
		t.Fatalf("expired token: %v", err)
	}
	// Rotation: a token signed before rotation verifies during the overlap.
	f.now = time.Unix(1_800_000_000, 0).Add(24*time.Hour - time.Minute)
	w = f.post(url.Values{"grant_type": {"client_credentials"}}, basic("acme-billing", "s3cret-acme-0123456789"))
	json.Unmarshal(w.Body.Bytes(), &body)
	f.now = f.now.Add(2 * time.Minute) // the ring rotates on next issue
	f.post(url.Values{"grant_type": {"client_credentials"}}, basic("acme-billing", "s3cret-acme-0123456789"))
	if n := len(f.srv.Ring().Verifying()); n != 2 {
		t.Fatalf("want 2 verifying keys after rotation, got %d", n)
	}
	if _, err := v.Authenticate(req(body.AccessToken)); err != nil {
		t.Fatalf("pre-rotation token during overlap: %v", err)
	}
}

func TestJWKSEndpoint(t *testing.T) {
	f := newFixture(t)
	w := httptest.NewRecorder()
	f.srv.ServeJWKS(w, httptest.NewRequest("GET", JWKSPath, nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("%d %s", w.Code, w.Header())
	}
	if strings.Contains(w.Body.String(), `"d"`) {
		t.Fatal("JWKS leaks private key material")
	}
}
