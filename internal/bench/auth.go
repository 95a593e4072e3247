package bench

// The auth targets: the same operation as the plain one, on two more APIs
// of the same Gatehouse process, one demanding an API key and one an RS256
// JWT, each with a policy that requires the scope items:read. One process
// serving all three keeps start-up cost and fairness simple: the targets
// differ only in URL and credential header, and every Gatehouse window runs
// on the same listener of the same process.
//
// The JWKS is served by the harness process itself rather than by a child
// like the upstream. It is off the measured path: Gatehouse fetches it once
// at start (the refresh interval is set far beyond any run) and caches
// verified tokens, so during a window the JWKS server is idle. Keeping it in
// the harness also keeps the signing key and the key set in one place; a
// child process would need the key handed over in a file for nothing.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse/gatehouse/internal/authn/apikey"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

// Names the auth targets' config and credentials use.
const (
	apiKeyBasePath = "/bench-apikey"
	jwtBasePath    = "/bench-jwt"
	benchScope     = "items:read"
	otherScope     = "items:write"  // held by credentials that must get 403
	benchConsumer  = "bench-app"    // the API key's consumer
	benchClient    = "bench-client" // the JWT's azp
	benchAudience  = "gatehouse-bench"
	benchIssuer    = "bench-idp" // the issuer's name in the config
	benchKID       = "bench-rs256"
	// tokenLife is the minted token's exp - iat; a fresh one is minted
	// when less than tokenMinLeft remains before a window (long runs).
	tokenLife    = time.Hour
	tokenMinLeft = 20 * time.Minute
)

// authSetup is what the auth targets need: a pepper file, an RS256 key
// with its JWKS server, a token minted with it, and an issued API key.
type authSetup struct {
	pepperFile string
	issuer     string // the iss, also the JWKS server's base URL
	jwksURL    string
	priv       *rsa.PrivateKey
	srv        *http.Server
	srvDone    chan struct{}

	// apiKey is issued into the store once the config is written, and
	// otherKey, of the same consumer, with otherScope only.
	apiKey, otherKey string

	mu       sync.Mutex
	token    string
	tokenExp time.Time
}

// newAuthSetup writes a pepper file (0600) into dir, makes a 2048-bit RSA
// key and serves its JWKS on a loopback port until close.
func newAuthSetup(dir string) (*authSetup, error) {
	secret := make([]byte, 48)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	a := &authSetup{pepperFile: filepath.Join(dir, "pepper")}
	if err := os.WriteFile(a.pepperFile, []byte(base64.StdEncoding.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return nil, err
	}
	// WriteFile's mode is filtered by the umask, which can only remove
	// bits; make it exactly 0600 anyway, as LoadPepper insists on.
	if err := os.Chmod(a.pepperFile, 0o600); err != nil {
		return nil, err
	}
	var err error
	if a.priv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	doc, err := jwksDocument(&a.priv.PublicKey)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a.issuer = "http://" + ln.Addr().String()
	a.jwksURL = a.issuer + "/jwks.json"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(doc)
	})
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second}
	a.srvDone = make(chan struct{})
	go func() {
		defer close(a.srvDone)
		_ = a.srv.Serve(ln)
	}()
	return a, nil
}

// close stops the JWKS server.
func (a *authSetup) close() {
	if a == nil || a.srv == nil {
		return
	}
	_ = a.srv.Close()
	<-a.srvDone
}

// jwksDocument is the RFC 7517 key set holding pub.
func jwksDocument(pub *rsa.PublicKey) ([]byte, error) {
	b64 := base64.RawURLEncoding
	return json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": benchKID, "use": "sig", "alg": "RS256",
		"n": b64.EncodeToString(pub.N.Bytes()),
		"e": b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// bearer returns a token with at least tokenMinLeft to live, minting one
// when needed.
func (a *authSetup) bearer() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && time.Until(a.tokenExp) >= tokenMinLeft {
		return a.token, nil
	}
	s, exp, err := a.mint(benchScope)
	if err != nil {
		return "", err
	}
	a.token, a.tokenExp = s, exp
	return s, nil
}

// mint signs a token with iss, aud, azp, sub, a jti, the given scope, iat
// now and exp an hour later: RS256 with the key the JWKS publishes.
func (a *authSetup) mint(scope string) (string, time.Time, error) {
	now := time.Now()
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", time.Time{}, err
	}
	exp := now.Add(tokenLife)
	t := jwtlib.NewWithClaims(jwtlib.SigningMethodRS256, jwtlib.MapClaims{
		"iss":   a.issuer,
		"sub":   benchClient,
		"azp":   benchClient,
		"aud":   benchAudience,
		"scope": scope,
		"jti":   hex.EncodeToString(jti),
		"iat":   now.Unix(),
		"exp":   exp.Unix(),
	})
	t.Header["kid"] = benchKID
	s, err := t.SignedString(a.priv)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint bench token: %w", err)
	}
	return s, exp, nil
}

// configSections is the identity part of the Gatehouse config.
func (a *authSetup) configSections() string {
	return fmt.Sprintf(`identity:
  pepper_file: %q
consumers:
  - {name: %s, scopes: [%s, %s]}
issuers:
  - name: %s
    issuer: %q
    jwks_url: %q
    audiences: [%s]
    algorithms: [RS256]
    refresh: 24h
`, a.pepperFile, benchConsumer, benchScope, otherScope, benchIssuer, a.issuer, a.jwksURL, benchAudience)
}

// configAPIs are the two auth APIs: the bench spec again, behind an API
// key or a JWT of the bench issuer, getItem requiring items:read.
func (a *authSetup) configAPIs(spec, upstream string) string {
	api := func(name, base, auth string) string {
		return fmt.Sprintf(`  - name: %s
    version: v1
    owner: {team: bench}
    spec: %q
    upstream: %s
    route: {base_path: %s}
    auth: [%q]
    policies:
      - {operation: getItem, scopes: [%s]}
`, name, spec, upstream, base, auth, benchScope)
	}
	return api("bench-apikey", apiKeyBasePath, "apikey") + api("bench-jwt", jwtBasePath, "jwt:"+benchIssuer)
}

// issueKey loads the written config the way Gatehouse will, and issues an
// API key for the bench consumer into its SQLite store, closed again
// before Gatehouse opens it.
func (a *authSetup) issueKey(ctx context.Context, cfgFile string) (err error) {
	loaded, err := config.Load(cfgFile, nil)
	if err != nil {
		return fmt.Errorf("load the bench config: %w", err)
	}
	cfg := loaded.Config
	if cfg.Store.SQLite == "" {
		return errors.New("the bench config names no SQLite store")
	}
	st, err := sqlite.Open(ctx, cfg.Store.SQLite)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	svc, err := apikey.ServiceFromConfig(cfg, st, nil)
	if err != nil {
		return err
	}
	issue := func(scope string) (string, error) {
		key, _, err := svc.Issue(ctx, apikey.IssueRequest{Consumer: benchConsumer, Scopes: []string{scope},
			TTL: 7 * 24 * time.Hour, CreatedBy: "gatehouse-bench"})
		if err != nil {
			return "", fmt.Errorf("issue the bench API key: %w", err)
		}
		return key, nil
	}
	if a.apiKey, err = issue(benchScope); err != nil {
		return err
	}
	a.otherKey, err = issue(otherScope)
	return err
}
