package server_test

// Helpers for the end-to-end identity tests (identity_*_test.go): a config
// renderer with a consumer directory and per-API auth and policies, a
// gateway starter that can reuse a directory (restarts), API-key forgery
// helpers, a small PKI for mTLS, and response assertions for 401/403.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn/apikey"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/server"
)

// idPepper is the server pepper of every identity test gateway (≥ 32 bytes).
// Gateways sharing a store must share it.
const idPepper = "e2e-identity-pepper-7f3a9c1d5b2e8f4a6c0d"

// defaultDirectory is the partner and consumer directory most identity
// tests use. It mirrors the quickstart: acme-billing is a read-only client
// of customer c-100, globex-ops a read/write admin of customer c-200.
const defaultDirectory = `partners:
  - {name: acme}
  - {name: globex}
  - {name: initech}
consumers:
  - {name: acme-billing, partner: acme, scopes: ["orders:read"], roles: [reader], claims: {customers: [c-100]}}
  - {name: globex-ops, partner: globex, scopes: ["orders:read", "orders:write"], roles: [reader, admin], claims: {customers: [c-200]}}
  - {name: initech-app, partner: initech, scopes: ["orders:read"]}
  - {name: solo-app, scopes: ["orders:read"]}
`

// idAPI is one API of an identity test config.
type idAPI struct {
	Name     string // also the version's API name; version is always v1
	Spec     string // file under testdata/specs (default orders-v1.yaml)
	BasePath string
	Upstream string
	// Body is raw YAML appended to the API (4-space indent): auth,
	// require_mtls, bound_tokens, allow_partners, policies.
	Body string
}

// idConfig renders a gatehouse.yaml for identity tests.
type idConfig struct {
	Postgres  string // DSN; empty: SQLite in the gateway's directory
	Redis     string
	Identity  string // extra lines under identity: (2-space indent)
	Directory string // partners and consumers; empty: defaultDirectory
	Top       string // raw top-level YAML: issuers, introspection, token_endpoint
	APIs      []idAPI
}

func (c idConfig) render() string {
	var b strings.Builder
	b.WriteString("# written by the identity end-to-end tests\nversion: 1\n")
	b.WriteString("listen:\n  https: 127.0.0.1:0\n  tls:\n    dev_cert: true\n    cert: certs/gateway.crt\n    key: certs/gateway.key\n")
	b.WriteString("admin:\n  listen: 127.0.0.1:0\n  token: ${GH_TEST_ADMIN_TOKEN}\n")
	if c.Postgres != "" {
		fmt.Fprintf(&b, "store:\n  postgres: %s\n", strconv.Quote(c.Postgres))
	} else {
		b.WriteString("store:\n  sqlite: data/gatehouse.db\n")
	}
	if c.Redis != "" {
		fmt.Fprintf(&b, "redis: %s\n", strconv.Quote(c.Redis))
	}
	fmt.Fprintf(&b, "identity:\n  pepper: %q\n", idPepper)
	b.WriteString(c.Identity)
	if c.Directory != "" {
		b.WriteString(c.Directory)
	} else {
		b.WriteString(defaultDirectory)
	}
	b.WriteString(c.Top)
	b.WriteString("apis:\n")
	for _, a := range c.APIs {
		spec := a.Spec
		if spec == "" {
			spec = "orders-v1.yaml"
		}
		fmt.Fprintf(&b, "  - name: %s\n    version: v1\n    owner: {team: e2e, contact: e2e@example.com}\n", a.Name)
		fmt.Fprintf(&b, "    spec: specs/%s\n    upstream: %s\n    route:\n      base_path: %s\n", spec, a.Upstream, a.BasePath)
		b.WriteString(a.Body)
	}
	return b.String()
}

// startIdentityGateway starts a gateway on cfg in a fresh directory.
func startIdentityGateway(t *testing.T, cfg idConfig) *gw {
	t.Helper()
	return startGatewayIn(t, t.TempDir(), cfg.render())
}

// startGatewayIn writes text as dir/gatehouse.yaml (with the spec
// fixtures) and starts a gateway on it. Starting again in the same
// directory reuses its certificate, SQLite store and token signing keys:
// a restart. The gateway closes when the test ends (g.srv.Close earlier is
// fine: Close is idempotent).
func startGatewayIn(t *testing.T, dir, text string) *gw {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "specs"), 0o755); err != nil {
		t.Fatal(err)
	}
	specs, err := filepath.Glob(filepath.Join("testdata", "specs", "*.yaml"))
	if err != nil || len(specs) == 0 {
		t.Fatalf("no spec fixtures: %v", err)
	}
	for _, s := range specs {
		copyFile(t, s, filepath.Join(dir, "specs", filepath.Base(s)))
	}
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	writeFileAtomic(t, cfgPath, text)

	logs := &syncBuffer{}
	o := server.Options{
		ConfigPath: cfgPath,
		Version:    "e2e-test",
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Env:        testEnv,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, o)
	if err != nil {
		t.Fatalf("server.Start: %v\nconfig:\n%s", err, text)
	}
	g := &gw{t: t, dir: dir, cfgPath: cfgPath, srv: srv, logs: logs}
	pemBytes, err := os.ReadFile(filepath.Join(dir, "certs", "gateway.crt"))
	if err != nil {
		srv.Close()
		t.Fatalf("read generated certificate: %v", err)
	}
	g.roots = x509.NewCertPool()
	if !g.roots.AppendCertsFromPEM(pemBytes) {
		srv.Close()
		t.Fatal("generated certificate does not parse")
	}
	g.h2 = &http.Client{Transport: g.transport(true), Timeout: 15 * time.Second, CheckRedirect: noRedirects}
	g.h1 = &http.Client{Transport: g.transport(false), Timeout: 15 * time.Second, CheckRedirect: noRedirects}
	g.admin = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 15 * time.Second}
	t.Cleanup(func() {
		for _, c := range []*http.Client{g.h2, g.h1, g.admin} {
			c.CloseIdleConnections()
		}
		srv.Close()
		if t.Failed() {
			t.Logf("gateway log (%s):\n%s", dir, logs.String())
		}
	})
	return g
}

// certClient is an HTTP/1.1 client of the gateway that presents cert (nil:
// none). requested is set when the server asked for a client certificate
// during a handshake.
type certClient struct {
	*http.Client
	requested *bool
}

func (g *gw) certClient(t *testing.T, cert *tls.Certificate) certClient {
	t.Helper()
	requested := new(bool)
	p := new(http.Protocols)
	p.SetHTTP1(true)
	tr := &http.Transport{
		Proxy: nil,
		TLSClientConfig: &tls.Config{RootCAs: g.roots, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			*requested = true // handshakes of one client are serialised enough for a test flag
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		}},
		Protocols:         p,
		DisableKeepAlives: true, // one handshake per request: every request shows what the server asked for
	}
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second, CheckRedirect: noRedirects}
	t.Cleanup(c.CloseIdleConnections)
	return certClient{Client: c, requested: requested}
}

// listenerRequestsClientCerts reports whether the gateway's own HTTPS
// listener asks clients for a certificate in the TLS handshake. Without
// that, no client ever sends one and mTLS cannot work at all.
func (g *gw) listenerRequestsClientCerts(t *testing.T, cert *tls.Certificate) bool {
	t.Helper()
	asked := false
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.srv.HTTPSAddr(), &tls.Config{
		RootCAs: g.roots, NextProtos: []string{"http/1.1"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			return cert, nil
		},
	})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	// In TLS 1.3 the client's certificate goes with its Finished: a write
	// and a read make sure the handshake is complete on both sides.
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "GET /healthz-probe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
	_, _ = io.Copy(io.Discard, conn)
	conn.Close()
	return asked
}

// clientAuthFront serves the gateway's data plane (the very same
// *gateway.Gateway, so the same Runtime, identity and revocation list) on
// a second TLS listener that requests client certificates. It is the
// proposed fix for the listener (ClientAuth: tls.RequestClientCert), used
// to exercise the mTLS pipeline while the real listener cannot. It returns
// the base URL.
func (g *gw) clientAuthFront(t *testing.T) string {
	t.Helper()
	tc := g.srv.Gateway().TLSConfig("1.2")
	tc.ClientAuth = tls.RequestClientCert
	hs := gateway.NewServer(g.srv.Gateway(), config.Limits{MaxHeaderBytes: 32 << 10})
	hs.TLSConfig = tc
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })
	return "https://" + ln.Addr().String()
}

// send makes one request to base+path with header pairs ("Name", "value")
// and reads the whole response.
func send(t *testing.T, c *http.Client, method, base, path string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// call is send to the gateway's own listener over HTTP/2.
func (g *gw) call(t *testing.T, method, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	return send(t, g.h2, method, g.base(), path, nil, header...)
}

// status is call returning only the status code.
func (g *gw) status(t *testing.T, method, path string, header ...string) int {
	t.Helper()
	resp, _ := g.call(t, method, path, header...)
	return resp.StatusCode
}

// adminJSON calls the admin API with the admin token and a JSON body.
func (g *gw) adminJSON(t *testing.T, method, path string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+g.srv.AdminAddr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.admin.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// issueKey issues an API key through the gateway's key service.
func (g *gw) issueKey(t *testing.T, consumer string, scopes []string, ttl time.Duration) (key, id string) {
	t.Helper()
	svc := g.srv.Gateway().Keys()
	if svc == nil {
		t.Fatal("the gateway has no key service (no pepper?)")
	}
	k, cred, err := svc.Issue(context.Background(), apikey.IssueRequest{Consumer: consumer, Scopes: scopes, TTL: ttl, CreatedBy: "e2e"})
	if err != nil {
		t.Fatalf("issue a key for %s: %v", consumer, err)
	}
	return k, cred.ID
}

// ---------------------------------------------------------------------------
// Response assertions

// assertUnauthorized checks a 401 problem whose WWW-Authenticate carries
// the given scheme (and, when code is set, error="code").
func assertUnauthorized(t *testing.T, resp *http.Response, body []byte, kind, scheme, code string) {
	t.Helper()
	assertProblem(t, resp, body, http.StatusUnauthorized, kind)
	ch := resp.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, scheme+" ") || !strings.Contains(ch, `realm="gatehouse"`) {
		t.Errorf("WWW-Authenticate %q: want a %s challenge with realm=\"gatehouse\"", ch, scheme)
	}
	if code != "" && !strings.Contains(ch, `error="`+code+`"`) {
		t.Errorf("WWW-Authenticate %q: want error=%q", ch, code)
	}
}

// withoutRequestID returns a problem body with request_id removed, in a
// canonical encoding, so two refusals can be compared byte for byte.
func withoutRequestID(t *testing.T, body []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("problem body: %v: %s", err, body)
	}
	delete(m, "request_id")
	b, _ := json.Marshal(m)
	return string(b)
}

// upstreamSaw decodes what the echo upstream received from a 200.
func upstreamSaw(t *testing.T, resp *http.Response, body []byte) http.Header {
	t.Helper()
	return echoed(t, resp, body).Header
}

// deniedReason is the internal reason the gateway logged for the denied
// request with this X-Request-Id ("" if none).
func (g *gw) deniedReason(requestID string) string {
	for _, line := range strings.Split(g.logs.String(), "\n") {
		if !strings.Contains(line, "request_id="+requestID+" ") || !strings.Contains(line, `msg="request denied"`) {
			continue
		}
		_, rest, ok := strings.Cut(line, " reason=")
		if !ok {
			return ""
		}
		reason, _, _ := strings.Cut(rest, " ")
		return reason
	}
	return ""
}

// knownBug fails the test when cond holds: a product bug these tests found
// (and that was fixed) has come back.
func knownBug(t *testing.T, cond bool, msg string) {
	t.Helper()
	if cond {
		t.Fatal("regression: " + msg)
	}
}

// ---------------------------------------------------------------------------
// API key forgery: keys with the right shape and a valid checksum, so the
// gateway gets past its offline checks and must decide by lookup and hash.

const (
	keyIDStart  = 4  // len("ghk_")
	keyIDEnd    = 20 // + 16
	keySecStart = 21 // + "_"
	keySumStart = 64 // + 43
	base62      = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

func randomBase62(n int) string {
	b := make([]byte, n)
	for i := range b {
		v, err := rand.Int(rand.Reader, big.NewInt(62))
		if err != nil {
			panic(err)
		}
		b[i] = base62[v.Int64()]
	}
	return string(b)
}

// withChecksum appends the 6-digit base62 CRC-32 to the first 64 characters.
func withChecksum(body string) string {
	v := crc32.ChecksumIEEE([]byte(body))
	var sum [6]byte
	for i := 5; i >= 0; i-- {
		sum[i] = base62[v%62]
		v /= 62
	}
	return body + string(sum[:])
}

// keyWithOtherSecret keeps key's ID and replaces its secret.
func keyWithOtherSecret(key string) string {
	return withChecksum(key[:keySecStart] + randomBase62(keySumStart-keySecStart))
}

// keyWithUnknownID keeps key's secret under an ID nobody was issued.
func keyWithUnknownID(key string) string {
	return withChecksum("ghk_" + randomBase62(keyIDEnd-keyIDStart) + key[keyIDEnd:keySumStart])
}

// keyWithBadChecksum changes the last checksum digit.
func keyWithBadChecksum(key string) string {
	last := key[len(key)-1]
	repl := byte('A')
	if last == 'A' {
		repl = 'B'
	}
	return key[:len(key)-1] + string(repl)
}

// ---------------------------------------------------------------------------
// A small PKI for mTLS

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name, Organization: []string{"e2e"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func serial(t *testing.T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// leafOpts vary a client certificate.
type leafOpts struct {
	expired    bool
	serverOnly bool // ExtKeyUsageServerAuth only: not a client certificate
}

// issue makes a client certificate signed by ca.
func (ca *testCA) issue(t *testing.T, cn string, o leafOpts) (*tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nb, na := time.Now().Add(-time.Hour), time.Now().Add(12*time.Hour)
	if o.expired {
		nb, na = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	}
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if o.serverOnly {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: eku,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// writeTemp writes content to a new file in a temp dir and returns its path.
func writeTemp(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenForm is a client-credentials request body.
func tokenForm(extra ...string) string {
	v := url.Values{"grant_type": {"client_credentials"}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v.Encode()
}
