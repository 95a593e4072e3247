package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Keys are generated once per test binary: RSA generation is slow.
var (
	keysOnce          sync.Once
	rsaKey, rsaKey2   *rsa.PrivateKey
	attackerRSA       *rsa.PrivateKey
	ecKey, attackerEC *ecdsa.PrivateKey
	edKey             ed25519.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		mustRSA := func() *rsa.PrivateKey {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			return k
		}
		rsaKey, rsaKey2, attackerRSA = mustRSA(), mustRSA(), mustRSA()
		ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		attackerEC, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
	})
}

// publicJWK renders a public key as a JWK.
func publicJWK(pub any, kid, alg string) map[string]any {
	enc := base64.RawURLEncoding.EncodeToString
	m := map[string]any{}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = enc(k.N.Bytes())
		m["e"] = enc(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		m["kty"] = "EC"
		m["crv"] = k.Curve.Params().Name
		b, _ := k.Bytes()
		m["x"] = enc(b[1 : 1+size])
		m["y"] = enc(b[1+size:])
	case ed25519.PublicKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = enc(k)
	}
	if kid != "" {
		m["kid"] = kid
	}
	if alg != "" {
		m["alg"] = alg
	}
	m["use"] = "sig"
	return m
}

// fakeClock is a settable clock shared by a test and its verifier.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// idp is a loopback HTTPS identity provider: discovery document and JWKS.
type idp struct {
	srv        *httptest.Server
	mu         sync.Mutex
	keys       []map[string]any
	status     int    // non-zero: answer every request with it
	body       []byte // non-nil: serve as the JWKS instead of keys
	issuer     string // discovery issuer (default srv.URL)
	jwksURI    string // discovery jwks_uri (default srv.URL+"/jwks.json")
	jwksHits   atomic.Int64
	discovered atomic.Int64
	delay      time.Duration
}

func newIdP(t testing.TB, keys ...map[string]any) *idp {
	t.Helper()
	p := &idp{keys: keys}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS errors are expected in some tests
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	status, body, keys, delay := p.status, p.body, p.keys, p.delay
	issuer, jwksURI := p.issuer, p.jwksURI
	p.mu.Unlock()
	switch r.URL.Path {
	case "/jwks.json":
		p.jwksHits.Add(1)
	case "/.well-known/openid-configuration":
		p.discovered.Add(1)
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if status != 0 {
		http.Error(w, "down", status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/jwks.json":
		if body != nil {
			_, _ = w.Write(body)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	case "/.well-known/openid-configuration":
		if issuer == "" {
			issuer = p.srv.URL
		}
		if jwksURI == "" {
			jwksURI = p.srv.URL + "/jwks.json"
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": issuer, "jwks_uri": jwksURI})
	default:
		http.NotFound(w, r)
	}
}

func (p *idp) setKeys(keys ...map[string]any) {
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

func (p *idp) setStatus(s int) {
	p.mu.Lock()
	p.status = s
	p.mu.Unlock()
}

func (p *idp) url() string { return p.srv.URL }

// writeCA writes the server's certificate as a PEM CA bundle.
func (p *idp) writeCA(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "idp-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const testAudience = "orders-api"

// issuerConfig is a typical issuer served by p's JWKS.
func issuerConfig(p *idp) config.Issuer {
	return config.Issuer{
		Name:        "corp-idp",
		Issuer:      p.url(),
		JWKSURL:     p.url() + "/jwks.json",
		Audiences:   []string{testAudience},
		Algorithms:  []string{"RS256", "ES256", "PS256", "EdDSA"},
		Skew:        config.Duration(time.Minute),
		MaxLifetime: config.Duration(24 * time.Hour),
		Refresh:     config.Duration(5 * time.Minute),
		RolesClaim:  "roles",
	}
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// startVerifier builds and starts a Verifier on p with the test clock.
func startVerifier(t testing.TB, p *idp, clk *fakeClock, cfg config.Issuer, opts ...Option) *Verifier {
	t.Helper()
	opts = append([]Option{WithHTTPClient(p.srv.Client()), WithClock(clk.Now), WithLogger(quietLog)}, opts...)
	v, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

func mustAuthenticator(t testing.TB, vs ...*Verifier) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(vs...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tokenSpec describes a token to mint. Zero fields take defaults.
type tokenSpec struct {
	alg    string         // default RS256
	kid    string         // default "rsa-1"; "-" for none
	key    any            // signing key; default rsaKey
	header map[string]any // merged over {alg, kid}
	claims map[string]any // merged over the default claims
	drop   []string       // claims to remove
}

var jtiSeq atomic.Int64

// defaultClaims is a valid claims set for issuer iss at clock time now.
func defaultClaims(iss string, now time.Time) map[string]any {
	return map[string]any{
		"iss":   iss,
		"sub":   "user-1",
		"aud":   testAudience,
		"azp":   "acme-billing",
		"scope": "orders:read orders:write",
		"iat":   now.Add(-time.Minute).Unix(),
		"exp":   now.Add(10 * time.Minute).Unix(),
		"jti":   fmt.Sprintf("jti-%d", jtiSeq.Add(1)),
	}
}

// mint signs a token for issuer iss per s.
func mint(t testing.TB, iss string, now time.Time, s tokenSpec) string {
	t.Helper()
	testKeys(t)
	if s.alg == "" {
		s.alg = "RS256"
	}
	if s.kid == "" {
		s.kid = "rsa-1"
	}
	if s.key == nil {
		s.key = rsaKey
	}
	h := map[string]any{"alg": s.alg}
	if s.kid != "-" {
		h["kid"] = s.kid
	}
	maps.Copy(h, s.header)
	c := defaultClaims(iss, now)
	maps.Copy(c, s.claims)
	for _, d := range s.drop {
		delete(c, d)
	}
	return signRaw(t, h, c, s.alg, s.key)
}

// signRaw encodes header and claims and signs them with key under alg
// (whatever alg the header claims).
func signRaw(t testing.TB, header, claims any, alg string, key any) string {
	t.Helper()
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	var sig []byte
	switch {
	case alg == "" || alg == "none" || alg == "None" || alg == "NONE":
	case alg[:2] == "HS":
		m := gojwt.GetSigningMethod(alg)
		var err error
		if sig, err = m.Sign(input, key); err != nil {
			t.Fatal(err)
		}
	default:
		m := methods[alg]
		var err error
		if sig, err = m.Sign(input, key); err != nil {
			t.Fatalf("sign %s: %v", alg, err)
		}
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func bearerRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://api.example.com/orders/v2/orders/1", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

// reasonOf returns the Failure reason of err, "" for nil, or "error: …".
func reasonOf(err error) string {
	if err == nil {
		return ""
	}
	var f *authn.Failure
	if errors.As(err, &f) {
		return f.Reason
	}
	if errors.Is(err, authn.ErrNoCredential) {
		return "no_credential"
	}
	return "error: " + err.Error()
}

// standardIdP serves the RSA, EC and Ed25519 test keys.
func standardIdP(t testing.TB) *idp {
	t.Helper()
	testKeys(t)
	return newIdP(t,
		publicJWK(&rsaKey.PublicKey, "rsa-1", "RS256"),
		publicJWK(&ecKey.PublicKey, "ec-1", "ES256"),
		publicJWK(edKey.Public(), "ed-1", ""),
		publicJWK(&rsaKey2.PublicKey, "rsa-any", ""),
	)
}
