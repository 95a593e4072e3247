package jwt

// The JWKS cache is our own rather than github.com/MicahParks/keyfunc/v3 +
// jwkset (DESIGN's first choice), measured against this package's needs:
//   - jwkset's unknown-kid refresh is a rate.Limiter.Wait per caller: 100
//     concurrent requests with a bogus kid queue up and each performs its
//     own refresh once its turn comes (a slow storm), where we need them to
//     coalesce onto one fetch and the rest to fail fast;
//   - it reads the response body without a size cap;
//   - it keeps keys forever when the IdP is down, where a cached key must
//     stop being trusted after its cache lifetime;
//   - one malformed key fails the whole refresh, and keys are not checked
//     against the token's alg/crv or their use/key_ops;
//   - no OIDC discovery.
// What remains is ~300 lines of stdlib: JWK → crypto key parsing, one
// in-flight fetch at a time, an atomic pointer to the current key set.

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
)

const (
	// fetchTimeout bounds one discovery or JWKS request, connection included.
	fetchTimeout = 5 * time.Second
	// maxDocBytes caps a discovery document or JWKS: real ones are a few KiB.
	maxDocBytes = 1 << 20
	// refetchInterval is the least time between two on-demand fetches (an
	// unknown kid, or no usable keys) of one issuer: an attacker inventing
	// kids gets at most one IdP request per interval.
	refetchInterval = 10 * time.Second
	// minKeyLifetime is the least time fetched keys stay trusted without a
	// successful refresh (see keyLifetime).
	minKeyLifetime = time.Hour
	// retryAfterFailure is the background retry delay after a failed fetch,
	// when the refresh interval is longer.
	retryAfterFailure = 30 * time.Second
	// maxCandidates bounds the keys one token may be tried against.
	maxCandidates = 4
	minRSABits    = 2048
	maxRSABits    = 8192
)

// keyLifetime is how long a fetched key set stays usable without a
// successful refresh: max(3 × refresh, 1 h). Through an IdP outage, cached
// keys keep verifying for that long after the last good fetch, then every
// request fails closed (503) until the IdP is back. Cache-Control headers
// are deliberately not consulted: the lifetime is the operator's decision.
func keyLifetime(refresh time.Duration) time.Duration {
	return max(3*refresh, minKeyLifetime)
}

// verificationKey is one public key of an issuer, fit for signatures.
type verificationKey struct {
	kid string
	kty string // RSA, EC, OKP
	crv string // P-256, P-384, P-521, Ed25519
	alg string // the JWK's alg, "" when it does not pin one
	pub any    // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
	// fingerprint is SHA-256 of the key's PKIX DER, tying cached tokens to
	// key material: when a key leaves the JWKS, tokens it signed stop
	// being served from the verified-token cache.
	fingerprint [32]byte
}

// fits reports whether k may verify a signature with the JWA algorithm alg:
// the key type and curve must be the algorithm's, and a key that pins an
// alg is used for that algorithm only.
func (k *verificationKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return k.kty == "RSA"
	case "ES256":
		return k.kty == "EC" && k.crv == "P-256"
	case "ES384":
		return k.kty == "EC" && k.crv == "P-384"
	case "ES512":
		return k.kty == "EC" && k.crv == "P-521"
	case "EdDSA":
		return k.kty == "OKP" && k.crv == "Ed25519"
	}
	return false
}

// keySet is one fetched JWKS, immutable once built.
type keySet struct {
	keys      []*verificationKey
	byKID     map[string][]*verificationKey
	byFP      map[[32]byte]bool
	fetchedAt time.Time
	expiresAt time.Time
}

func (ks *keySet) usable(now time.Time) bool { return ks != nil && now.Before(ks.expiresAt) }

// candidates returns the keys a token with kid and alg may be verified
// with: unknown_kid when the set has no such kid (a token without kid may
// use any key), alg_not_allowed when it has but none fits the algorithm.
func (ks *keySet) candidates(kid, alg string) ([]*verificationKey, *authn.Failure) {
	pool := ks.keys
	if kid != "" {
		pool = ks.byKID[kid]
	}
	if len(pool) == 0 {
		return nil, fail(ReasonUnknownKID)
	}
	var out []*verificationKey
	for _, k := range pool {
		if k.fits(alg) {
			out = append(out, k)
			if len(out) == maxCandidates {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fail(ReasonAlgNotAllowed)
	}
	return out, nil
}

// jwkJSON is the subset of RFC 7517/7518 members Gatehouse reads.
type jwkJSON struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

// parseJWKS builds a key set from a JWKS document. Keys that are not fit
// for verifying signatures (symmetric, encryption-only, unsupported, weak,
// off-curve) are skipped with a reason each; a set left with no key is an
// error, so a broken refresh never replaces a working set.
func parseJWKS(doc []byte, now time.Time, lifetime time.Duration) (*keySet, []string, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, nil, fmt.Errorf("decode jwks: %w", err)
	}
	ks := &keySet{byKID: map[string][]*verificationKey{}, byFP: map[[32]byte]bool{},
		fetchedAt: now, expiresAt: now.Add(lifetime)}
	var skipped []string
	for i, raw := range set.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		ks.keys = append(ks.keys, k)
		if k.kid != "" {
			ks.byKID[k.kid] = append(ks.byKID[k.kid], k)
		}
		ks.byFP[k.fingerprint] = true
	}
	if len(ks.keys) == 0 {
		return nil, skipped, fmt.Errorf("jwks holds no usable signature key (%d skipped)", len(skipped))
	}
	return ks, skipped, nil
}

// parseJWK turns one JWK into a verification key.
func parseJWK(raw []byte) (*verificationKey, error) {
	var j jwkJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("kid %q: use %q is not sig", j.Kid, j.Use)
	}
	if j.KeyOps != nil {
		verify := false
		for _, op := range j.KeyOps {
			verify = verify || op == "verify"
		}
		if !verify {
			return nil, fmt.Errorf("kid %q: key_ops lack verify", j.Kid)
		}
	}
	if j.Alg != "" && methods[j.Alg] == nil {
		return nil, fmt.Errorf("kid %q: alg %q is not a supported signature algorithm", j.Kid, j.Alg)
	}
	k := &verificationKey{kid: j.Kid, kty: j.Kty, alg: j.Alg, crv: j.Crv}
	switch j.Kty {
	case "RSA":
		n, err1 := decodeB64(j.N)
		e, err2 := decodeB64(j.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("kid %q: bad RSA n or e", j.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("kid %q: RSA key of %d bits (want %d to %d)", j.Kid, bits, minRSABits, maxRSABits)
		}
		if pub.E < 3 || pub.E%2 == 0 || pub.E > 1<<31-1 {
			return nil, fmt.Errorf("kid %q: bad RSA exponent", j.Kid)
		}
		k.pub = pub
		k.crv = ""
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("kid %q: unsupported curve %q", j.Kid, j.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err1 := decodeB64(j.X)
		y, err2 := decodeB64(j.Y)
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, fmt.Errorf("kid %q: bad EC coordinates", j.Kid)
		}
		point := append(append([]byte{4}, x...), y...)
		// ParseUncompressedPublicKey refuses off-curve points and the
		// point at infinity (invalid-curve attacks).
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("kid %q: %w", j.Kid, err)
		}
		k.pub = pub
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("kid %q: unsupported OKP curve %q", j.Kid, j.Crv)
		}
		x, err := decodeB64(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("kid %q: bad Ed25519 key", j.Kid)
		}
		k.pub = ed25519.PublicKey(x)
	case "oct":
		return nil, fmt.Errorf("kid %q: symmetric keys are never used", j.Kid)
	default:
		return nil, fmt.Errorf("kid %q: unsupported kty %q", j.Kid, j.Kty)
	}
	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		return nil, fmt.Errorf("kid %q: %w", j.Kid, err)
	}
	k.fingerprint = sha256.Sum256(der)
	return k, nil
}

// decodeB64 decodes base64url, tolerating the padding some IdPs add.
func decodeB64(s string) ([]byte, error) {
	return b64.DecodeString(strings.TrimRight(s, "="))
}

// errRateLimited reports an on-demand fetch refused by refetchInterval.
var errRateLimited = errors.New("jwks refetch rate-limited")

// keySource fetches and caches one issuer's keys.
type keySource struct {
	name         string
	issuer       string
	discoveryURL string
	jwksURL      string
	client       *http.Client
	now          func() time.Time
	log          *slog.Logger
	refresh      time.Duration
	lifetime     time.Duration

	keys atomic.Pointer[keySet]

	mu           sync.Mutex
	inflight     *fetchCall
	lastOnDemand time.Time
	jwksURI      string // from discovery, reused by on-demand fetches
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// current returns the key set if it is still within its lifetime.
func (s *keySource) current() *keySet {
	ks := s.keys.Load()
	if !ks.usable(s.now()) {
		return nil
	}
	return ks
}

// fetch fetches the keys, or joins the fetch already in flight, so that any
// number of concurrent callers cause one request to the IdP. On-demand
// fetches (unknown kid, no keys) are refused with errRateLimited within
// refetchInterval of the previous one; background refreshes are not.
func (s *keySource) fetch(ctx context.Context, onDemand bool) error {
	s.mu.Lock()
	if c := s.inflight; c != nil {
		s.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if onDemand {
		now := s.now()
		if !s.lastOnDemand.IsZero() && now.Sub(s.lastOnDemand) < refetchInterval {
			s.mu.Unlock()
			return errRateLimited
		}
		s.lastOnDemand = now
	}
	c := &fetchCall{done: make(chan struct{})}
	s.inflight = c
	s.mu.Unlock()

	// An on-demand fetch outlives the request that started it (others may
	// be waiting on it), so only fetchTimeout bounds it; a background one
	// ends with the refresh loop, so Close does not wait for it.
	base := ctx
	if onDemand {
		base = context.WithoutCancel(ctx)
	}
	fctx, cancel := context.WithTimeout(base, fetchTimeout)
	c.err = s.fetchOnce(fctx, !onDemand)
	cancel()
	if c.err != nil {
		s.log.Warn("jwks fetch failed", "issuer", s.name, "error", c.err.Error())
	}

	s.mu.Lock()
	s.inflight = nil
	s.mu.Unlock()
	close(c.done)
	return c.err
}

// fetchOnce resolves the JWKS URL (through discovery when configured) and
// installs the fetched key set.
func (s *keySource) fetchOnce(ctx context.Context, rediscover bool) error {
	uri := s.jwksURL
	if s.discoveryURL != "" {
		s.mu.Lock()
		uri = s.jwksURI
		s.mu.Unlock()
		if uri == "" || rediscover {
			u, err := s.discover(ctx)
			if err != nil {
				return err
			}
			uri = u
			s.mu.Lock()
			s.jwksURI = u
			s.mu.Unlock()
		}
	}
	doc, err := s.get(ctx, uri)
	if err != nil {
		return fmt.Errorf("load jwks %s: %w", uri, err)
	}
	ks, skipped, err := parseJWKS(doc, s.now(), s.lifetime)
	for _, why := range skipped {
		s.log.Warn("jwks key skipped", "issuer", s.name, "reason", why)
	}
	if err != nil {
		return fmt.Errorf("load jwks %s: %w", uri, err)
	}
	s.keys.Store(ks)
	return nil
}

// discover reads the OIDC discovery document and returns its jwks_uri,
// after checking that the document speaks for the configured issuer
// (OpenID Connect Discovery 1.0 §4.3): otherwise an IdP hosting several
// tenants could hand us another tenant's keys.
func (s *keySource) discover(ctx context.Context) (string, error) {
	doc, err := s.get(ctx, s.discoveryURL)
	if err != nil {
		return "", fmt.Errorf("load discovery %s: %w", s.discoveryURL, err)
	}
	var d struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return "", fmt.Errorf("load discovery %s: decode: %w", s.discoveryURL, err)
	}
	if d.Issuer != s.issuer {
		return "", fmt.Errorf("discovery %s: issuer %q is not the configured %q", s.discoveryURL, d.Issuer, s.issuer)
	}
	if err := checkFetchURL(d.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery %s: jwks_uri: %w", s.discoveryURL, err)
	}
	return d.JWKSURI, nil
}

// get fetches u and returns its body, at most maxDocBytes.
func (s *keySource) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxDocBytes {
		return nil, fmt.Errorf("response larger than %d bytes", maxDocBytes)
	}
	return body, nil
}

// run refreshes the keys every s.refresh (sooner after a failure) until ctx
// ends.
func (s *keySource) run(ctx context.Context, lastErr error) {
	for {
		wait := s.refresh
		if lastErr != nil {
			wait = min(wait, retryAfterFailure)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		lastErr = s.fetch(ctx, false)
	}
}

// checkFetchURL allows https, and http to loopback only (tests, sidecars).
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q: keys must be fetched over https (http only for loopback)", raw)
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// newHTTPClient builds the IdP client: TLS 1.2+, the issuer's CA bundle
// instead of the system roots when set, a timeout per request, and
// redirects only to URLs checkFetchURL accepts.
func newHTTPClient(caFile string) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: fetchTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   fetchTimeout,
		ResponseHeaderTimeout: fetchTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   fetchTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return checkFetchURL(req.URL.String())
		},
	}, nil
}
