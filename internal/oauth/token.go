package oauth

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/authn/mtls"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Paths served on the data-plane listener when the endpoint is enabled.
const (
	TokenPath = "/oauth2/token"
	JWKSPath  = "/.well-known/jwks.json"
)

// assertionType is RFC 7523's client assertion type for private_key_jwt.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLifetime bounds how far in the future a client assertion may
// expire: a long-lived assertion is a stealable password.
const maxAssertionLifetime = 5 * time.Minute

// ClientSecrets verifies a consumer's client secret (stored hashed, like API
// keys). It returns the credential ID, an *authn.Failure for a wrong or
// revoked secret, or another error when the store is unavailable.
type ClientSecrets interface {
	VerifyClientSecret(ctx context.Context, consumer, secret string) (credentialID string, err error)
}

// Server is the token endpoint.
type Server struct {
	cfg       config.TokenEndpoint
	ring      *KeyRing
	consumers map[string]*config.Consumer
	clientKey map[string]map[string]crypto.PublicKey // consumer → kid → key
	secrets   ClientSecrets
	certs     *mtls.Authenticator
	now       func() time.Time
	log       *slog.Logger

	replayMu sync.Mutex
	replay   map[string]time.Time // client assertion jti → its exp
}

// Options wires optional parts of the Server.
type Options struct {
	Secrets ClientSecrets       // nil: client secrets are not accepted
	Certs   *mtls.Authenticator // nil: tls_client_auth is not accepted
	Now     func() time.Time
	Log     *slog.Logger
}

// NewServer builds the endpoint from config.
func NewServer(cfg config.TokenEndpoint, consumers []config.Consumer, o Options) (*Server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	ring, err := NewKeyRing(cfg.KeyDir, cfg.Algorithm, cfg.RotateEvery.D(), cfg.Overlap.D(), o.Now)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ring: ring, consumers: map[string]*config.Consumer{}, clientKey: map[string]map[string]crypto.PublicKey{},
		secrets: o.Secrets, certs: o.Certs, now: o.Now, log: o.Log, replay: map[string]time.Time{}}
	for i := range consumers {
		c := &consumers[i]
		s.consumers[c.Name] = c
		if c.JWKSFile != "" {
			keys, err := loadClientJWKS(c.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("consumer %s: %w", c.Name, err)
			}
			s.clientKey[c.Name] = keys
		}
	}
	return s, nil
}

// Ring exposes the signing keys (the gateway verifies its tokens with them).
func (s *Server) Ring() *KeyRing { return s.ring }

func loadClientJWKS(path string) (map[string]crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read jwks_file: %w", err)
	}
	var set struct {
		Keys []JWK `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("jwks_file %s: %w", path, err)
	}
	keys := map[string]crypto.PublicKey{}
	for _, j := range set.Keys {
		if j.Kid == "" {
			return nil, fmt.Errorf("jwks_file %s: every key needs a kid", path)
		}
		k, err := ParseJWK(j)
		if err != nil {
			return nil, fmt.Errorf("jwks_file %s: key %s: %w", path, j.Kid, err)
		}
		keys[j.Kid] = k
	}
	return keys, nil
}

// tokenError is an RFC 6749 §5.2 error response.
type tokenError struct {
	status int
	code   string
	desc   string
	reason string // internal, for logs
}

func (e *tokenError) Error() string { return e.code + ": " + e.reason }

func invalidClient(reason string) *tokenError {
	return &tokenError{http.StatusUnauthorized, "invalid_client", "Client authentication failed.", reason}
}

func invalidRequest(desc string) *tokenError {
	return &tokenError{http.StatusBadRequest, "invalid_request", desc, "invalid_request"}
}

// ServeJWKS publishes the verifying keys.
func (s *Server) ServeJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	b, err := s.ring.JWKS()
	if err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}

// ServeToken implements the client-credentials grant.
func (s *Server) ServeToken(w http.ResponseWriter, r *http.Request) {
	resp, err := s.token(r)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Type", "application/json")
	if err != nil {
		var te *tokenError
		if !errors.As(err, &te) {
			s.log.Error("token endpoint failure", "error", err.Error())
			te = &tokenError{http.StatusServiceUnavailable, "temporarily_unavailable", "Try again later.", "internal"}
		}
		if te.code == "invalid_client" {
			h.Set("WWW-Authenticate", `Basic realm="gatehouse", charset="UTF-8"`)
		}
		s.log.Info("token request refused", "error", te.code, "reason", te.reason)
		w.WriteHeader(te.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": te.code, "error_description": te.desc})
		return
	}
	_ = json.NewEncoder(w).Encode(resp)
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

func (s *Server) token(r *http.Request) (*tokenResponse, error) {
	if r.Method != http.MethodPost {
		return nil, &tokenError{http.StatusMethodNotAllowed, "invalid_request", "Use POST.", "method"}
	}
	if r.URL.RawQuery != "" {
		// Credentials in a URL end up in logs and histories.
		return nil, invalidRequest("Send parameters in the form body, not the query string.")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("Content-Type must be application/x-www-form-urlencoded.")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return nil, invalidRequest("The form body is malformed.")
	}
	form := r.PostForm
	for k, v := range form {
		if len(v) > 1 {
			// RFC 6749 §3.2: parameters must not be repeated.
			return nil, invalidRequest("Parameter " + k + " is repeated.")
		}
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		return nil, &tokenError{http.StatusBadRequest, "unsupported_grant_type", "Only client_credentials is supported.", "grant_type"}
	}
	consumer, credID, err := s.authenticateClient(r, form)
	if err != nil {
		return nil, err
	}
	scopes, err := grantScopes(consumer.Scopes, form.Get("scope"))
	if err != nil {
		return nil, err
	}
	var thumb string
	if s.certs != nil {
		if v, err := s.certs.Verify(r); err == nil && v.Partner == consumer.Partner {
			// RFC 8705 §3: bind the token to the certificate the client
			// connected with, so a stolen token is useless without the key.
			thumb = mtls.Thumbprint(v.Leaf)
		}
	}
	tok, ttl, err := s.Issue(consumer, scopes, thumb, credID)
	if err != nil {
		return nil, err
	}
	return &tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(ttl.Seconds()), Scope: strings.Join(scopes, " ")}, nil
}

// authenticateClient applies exactly one client authentication method and
// returns the consumer and the ID of the credential it used.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (*config.Consumer, string, error) {
	basicID, basicSecret, hasBasic := r.BasicAuth()
	methods := 0
	for _, present := range []bool{hasBasic, form.Get("client_secret") != "", form.Get("client_assertion") != ""} {
		if present {
			methods++
		}
	}
	if methods > 1 {
		return nil, "", invalidRequest("Use exactly one client authentication method.")
	}
	ctx := r.Context()
	switch {
	case hasBasic:
		id, err1 := url.QueryUnescape(basicID)
		secret, err2 := url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil {
			return nil, "", invalidClient("basic_encoding")
		}
		return s.checkSecret(ctx, id, secret)
	case form.Get("client_secret") != "":
		return s.checkSecret(ctx, form.Get("client_id"), form.Get("client_secret"))
	case form.Get("client_assertion") != "":
		if form.Get("client_assertion_type") != assertionType {
			return nil, "", invalidRequest("client_assertion_type must be " + assertionType + ".")
		}
		return s.checkAssertion(form.Get("client_id"), form.Get("client_assertion"))
	default:
		// tls_client_auth (RFC 8705 §2): the certificate is the credential.
		if s.certs == nil {
			return nil, "", invalidClient("no_client_auth")
		}
		p, err := s.certs.Authenticate(r)
		if err != nil {
			return nil, "", invalidClient("no_client_auth")
		}
		if id := form.Get("client_id"); id != "" && id != p.Consumer {
			return nil, "", invalidClient("client_id_cert_mismatch")
		}
		c, err := s.consumer(p.Consumer)
		return c, p.CredentialID, err
	}
}

func (s *Server) consumer(id string) (*config.Consumer, error) {
	c, ok := s.consumers[id]
	if !ok {
		return nil, invalidClient("unknown_client")
	}
	return c, nil
}

func (s *Server) checkSecret(ctx context.Context, id, secret string) (*config.Consumer, string, error) {
	if s.secrets == nil {
		return nil, "", invalidClient("secrets_disabled")
	}
	c, err := s.consumer(id)
	if err != nil {
		return nil, "", err
	}
	credID, err := s.secrets.VerifyClientSecret(ctx, c.Name, secret)
	if err != nil {
		var f *authn.Failure
		if errors.As(err, &f) {
			return nil, "", invalidClient(f.Reason)
		}
		return nil, "", err
	}
	return c, credID, nil
}

// checkAssertion verifies a private_key_jwt client assertion (RFC 7523 §3).
func (s *Server) checkAssertion(clientID, assertion string) (*config.Consumer, string, error) {
	var claims jwt.RegisteredClaims
	var kid string
	tok, err := jwt.ParseWithClaims(assertion, &claims, func(t *jwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		iss, _ := t.Claims.GetIssuer()
		keys := s.clientKey[iss]
		k, ok := keys[kid]
		if !ok {
			return nil, errors.New("unknown client key")
		}
		return k, nil
	},
		jwt.WithValidMethods([]string{"ES256", "EdDSA"}),
		jwt.WithAudience(s.cfg.Issuer+TokenPath, s.cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.now),
		jwt.WithLeeway(30*time.Second),
	)
	if err != nil || !tok.Valid {
		return nil, "", invalidClient("bad_assertion")
	}
	if claims.Issuer == "" || claims.Issuer != claims.Subject || (clientID != "" && clientID != claims.Issuer) {
		return nil, "", invalidClient("assertion_subject")
	}
	if claims.ExpiresAt.Time.After(s.now().Add(maxAssertionLifetime)) {
		return nil, "", invalidClient("assertion_too_long")
	}
	if claims.ID == "" || !s.firstUse(claims.Issuer+"\x00"+claims.ID, claims.ExpiresAt.Time) {
		return nil, "", invalidClient("assertion_replay")
	}
	c, err := s.consumer(claims.Issuer)
	return c, "jwk:" + claims.Issuer + ":" + kid, err
}

// maxReplayEntries bounds the replay cache; assertions live at most five
// minutes, so this allows over 300 token requests a second.
const maxReplayEntries = 100_000

// firstUse records an assertion jti until it expires and reports whether
// it had not been seen. When the cache is full it refuses, failing closed.
func (s *Server) firstUse(key string, exp time.Time) bool {
	s.replayMu.Lock()
	defer s.replayMu.Unlock()
	now := s.now()
	if len(s.replay) >= maxReplayEntries {
		for k, e := range s.replay {
			if e.Before(now) {
				delete(s.replay, k)
			}
		}
		if len(s.replay) >= maxReplayEntries {
			return false
		}
	}
	if e, seen := s.replay[key]; seen && !e.Before(now) {
		return false
	}
	s.replay[key] = exp.Add(time.Minute)
	return true
}

// grantScopes narrows the consumer's scopes to the requested ones; asking
// for a scope the consumer lacks is an error, never a silent widening.
func grantScopes(allowed []string, requested string) ([]string, error) {
	if strings.TrimSpace(requested) == "" {
		return slices.Clone(allowed), nil
	}
	var out []string
	for _, sc := range strings.Fields(requested) {
		if !slices.Contains(allowed, sc) {
			return nil, &tokenError{http.StatusBadRequest, "invalid_scope", "A requested scope is not granted to this client.", "scope_not_granted"}
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// Claims of the tokens Gatehouse issues.
type Claims struct {
	jwt.RegisteredClaims
	ClientID string            `json:"client_id"`
	Azp      string            `json:"azp"`
	Partner  string            `json:"partner,omitempty"`
	Scope    string            `json:"scope,omitempty"`
	Cnf      map[string]string `json:"cnf,omitempty"`
	// Cred is the ID of the client credential the token was obtained
	// with, so revoking that credential also ends the tokens it bought.
	Cred string `json:"gh_cred,omitempty"`
}

// Issue signs a token for consumer with the given scopes, bound to the
// certificate thumbprint when it is not empty; credID names the client
// credential it was obtained with.
func (s *Server) Issue(c *config.Consumer, scopes []string, certThumb, credID string) (string, time.Duration, error) {
	key, err := s.ring.Active()
	if err != nil {
		return "", 0, err
	}
	now := s.now().Truncate(time.Second)
	ttl := s.cfg.TTL.D()
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	cl := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: c.Name, Audience: jwt.ClaimStrings{s.cfg.Audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID: base64.RawURLEncoding.EncodeToString(jti[:]),
		},
		ClientID: c.Name, Azp: c.Name, Partner: c.Partner, Scope: strings.Join(scopes, " "), Cred: credID,
	}
	if certThumb != "" {
		cl.Cnf = map[string]string{"x5t#S256": certThumb}
	}
	method := jwt.SigningMethod(jwt.SigningMethodES256)
	if key.Alg == "EdDSA" {
		method = jwt.SigningMethodEdDSA
	}
	t := jwt.NewWithClaims(method, cl)
	t.Header["kid"] = key.ID
	t.Header["typ"] = "at+jwt" // RFC 9068
	signed, err := t.SignedString(key.Private)
	if err != nil {
		return "", 0, fmt.Errorf("sign token: %w", err)
	}
	return signed, ttl, nil
}

// Verifier authenticates requests carrying tokens this gateway issued.
type Verifier struct {
	cfg       config.TokenEndpoint
	ring      *KeyRing
	now       func() time.Time
	consumers map[string]*config.Consumer
}

// NewVerifier verifies tokens signed by ring. The consumers are the
// config's current ones: a token of a consumer since removed, moved to
// another partner, or stripped of a scope gets no more than the consumer
// has now, exactly as its API keys.
func NewVerifier(cfg config.TokenEndpoint, ring *KeyRing, consumers []config.Consumer, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{cfg: cfg, ring: ring, now: now, consumers: map[string]*config.Consumer{}}
	for i := range consumers {
		v.consumers[consumers[i].Name] = &consumers[i]
	}
	return v
}

// Scheme implements authn.Authenticator.
func (v *Verifier) Scheme() string { return "Bearer" }

// Authenticate implements authn.Authenticator for the "token" method. A
// Bearer token not issued by this gateway is "not mine".
func (v *Verifier) Authenticate(r *http.Request) (*authn.Principal, error) {
	raw, ok := bearer(r)
	if !ok {
		return nil, authn.ErrNoCredential
	}
	var cl Claims
	parser := jwt.NewParser(jwt.WithoutClaimsValidation())
	unverified, _, err := parser.ParseUnverified(raw, &cl)
	if err != nil || unverified == nil || cl.Issuer != v.cfg.Issuer {
		return nil, authn.ErrNoCredential
	}
	cl = Claims{}
	keys := v.ring.Verifying()
	tok, err := jwt.ParseWithClaims(raw, &cl, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		for _, k := range keys {
			if k.ID == kid && t.Method.Alg() == k.Alg {
				return k.PublicKey, nil
			}
		}
		return nil, errors.New("unknown kid")
	},
		jwt.WithValidMethods([]string{"ES256", "EdDSA"}),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(v.now),
		jwt.WithLeeway(5*time.Second),
	)
	if err != nil || !tok.Valid {
		reason := "bad_token"
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			reason = "expired"
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			reason = "bad_signature"
		}
		return nil, authn.Fail("Bearer", reason)
	}
	if cl.IssuedAt == nil || cl.ExpiresAt.Sub(cl.IssuedAt.Time) > v.cfg.TTL.D()+time.Second {
		return nil, authn.Fail("Bearer", "lifetime_exceeded")
	}
	c, ok := v.consumers[cl.Subject]
	switch {
	case !ok:
		return nil, authn.Fail("Bearer", "unknown_consumer")
	case c.Partner != cl.Partner:
		return nil, authn.Fail("Bearer", "partner_changed")
	}
	claims := make(map[string]any, len(c.Claims)+3)
	for k, val := range c.Claims {
		claims[k] = val
	}
	claims["client_id"], claims["partner"] = cl.ClientID, cl.Partner
	if cl.Cnf != nil {
		claims["cnf"] = map[string]any{"x5t#S256": cl.Cnf["x5t#S256"]}
	}
	var scopes []string
	for _, sc := range strings.Fields(cl.Scope) {
		if slices.Contains(c.Scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	credID := cl.Cred
	if credID == "" {
		credID = "jti:" + cl.ID
	}
	return &authn.Principal{
		Kind: authn.KindToken, Consumer: cl.Subject, Partner: cl.Partner, Issuer: cl.Issuer,
		Subject: cl.Subject, TokenID: cl.ID, CredentialID: credID,
		Scopes: scopes, Roles: c.Roles, Claims: claims, ExpiresAt: cl.ExpiresAt.Time,
	}, nil
}

// bearer extracts an RFC 6750 bearer token from the Authorization header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 8 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	t := strings.TrimSpace(h[7:])
	return t, t != ""
}
