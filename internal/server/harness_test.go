package server_test

// The end-to-end harness: a real gateway (server.Start) on 127.0.0.1:0 with a
// generated development certificate that the test clients verify, a SQLite
// store in t.TempDir(), and real upstreams (httptest servers) that echo what
// they received so each test can assert exactly what the backend saw.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/gateway"
	"github.com/gatehouse/gatehouse/internal/server"
)

// adminToken is what ${GH_TEST_ADMIN_TOKEN} resolves to (through
// server.Options.Env, never the process environment).
const adminToken = "e2e-admin-token-4f9c2b7d1a"

// testEnv resolves ${...} references in test configs.
func testEnv(name string) (string, bool) {
	if name == "GH_TEST_ADMIN_TOKEN" {
		return adminToken, true
	}
	return "", false
}

// ---------------------------------------------------------------------------
// Echo upstream

// seenRequest is what an echo upstream received, returned as its JSON body.
type seenRequest struct {
	Upstream   string      `json:"upstream"`
	Method     string      `json:"method"`
	WirePath   string      `json:"wire_path"` // path of the request-target exactly as sent on the wire
	Path       string      `json:"path"`      // r.URL.Path (decoded)
	RawPath    string      `json:"raw_path"`  // r.URL.RawPath
	RequestURI string      `json:"request_uri"`
	Query      string      `json:"query"`
	Host       string      `json:"host"`
	Header     http.Header `json:"header"`
	BodyBytes  int64       `json:"body_bytes"`
	BodyErr    string      `json:"body_err,omitempty"`
}

// echoUpstream is a real net/http backend on 127.0.0.1:0. The query string
// steers failures: sleep=<duration> delays the answer, fail=close hijacks
// and closes before answering, fail=midbody sends headers and part of the
// body, then closes. Like the demo upstream it has an /admin/ handler that
// is not in any spec: no request may ever reach it through the gateway.
type echoUpstream struct {
	name      string
	srv       *httptest.Server
	mu        sync.Mutex
	seen      []seenRequest
	adminHits atomic.Int64
}

const maxSeen = 100000 // bounds memory under load

func newEchoUpstream(t *testing.T, name string) *echoUpstream {
	t.Helper()
	u := &echoUpstream{name: name}
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		u.adminHits.Add(1)
		u.record(r, 0, nil)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"secret":"the admin panel"}`)
	})
	mux.HandleFunc("/", u.echo)
	u.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		u.srv.Close()
		if n := u.adminHits.Load(); n != 0 {
			t.Errorf("upstream %s: the upstream-only /admin/ handler was reached %d times", name, n)
		}
	})
	return u
}

// URL is the upstream's base URL, http://127.0.0.1:port.
func (u *echoUpstream) URL() string { return u.srv.URL }

func (u *echoUpstream) record(r *http.Request, n int64, err error) seenRequest {
	wire := r.RequestURI
	if i := strings.IndexByte(wire, '?'); i >= 0 {
		wire = wire[:i]
	}
	s := seenRequest{
		Upstream: u.name, Method: r.Method, WirePath: wire, Path: r.URL.Path, RawPath: r.URL.RawPath,
		RequestURI: r.RequestURI, Query: r.URL.RawQuery, Host: r.Host, Header: r.Header.Clone(), BodyBytes: n,
	}
	if err != nil {
		s.BodyErr = err.Error()
	}
	u.mu.Lock()
	if len(u.seen) < maxSeen {
		u.seen = append(u.seen, s)
	}
	u.mu.Unlock()
	return s
}

func (u *echoUpstream) echo(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	s := u.record(r, n, err)
	if strings.HasPrefix(r.URL.Path, "/admin") || strings.HasPrefix(s.WirePath, "/admin") {
		u.adminHits.Add(1)
	}
	q := r.URL.Query()
	if d, err := time.ParseDuration(q.Get("sleep")); err == nil {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	switch q.Get("fail") {
	case "close":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	case "midbody":
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"partial\":")
			_ = buf.Flush()
			time.Sleep(20 * time.Millisecond)
			_ = conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Upstream", u.name)
	_ = json.NewEncoder(w).Encode(s)
}

// byRequestID returns what the upstream saw for one X-Request-Id.
func (u *echoUpstream) byRequestID(id string) []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []seenRequest
	for _, s := range u.seen {
		if s.Header.Get("X-Request-Id") == id {
			out = append(out, s)
		}
	}
	return out
}

// count is the number of requests the upstream has seen.
func (u *echoUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// closedAddr returns a loopback address nobody listens on.
// closedAddr is an address nothing listens on. Port 1 is never handed out
// for :0, so no other test's listener can take it in the meantime.
func closedAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:1"
}

// ---------------------------------------------------------------------------
// Config template

// apiConfig is one entry of apis:.
type apiConfig struct {
	Name, Version string
	Spec          string // file name under specs/ in the temp dir
	Upstream      string
	Host          string
	BasePath      string
	KeepBasePath  bool
	Lifecycle     string
	APIExtra      string // raw YAML lines appended to the API (4-space indent)
}

// gwConfig renders a gatehouse.yaml for the harness. Listeners always bind
// 127.0.0.1:0; the certificate is a dev_cert generated into the temp dir.
type gwConfig struct {
	PlainHTTP      bool
	AllowPlaintext bool
	MinVersion     string
	TrustedProxies []string
	NoAdminToken   bool
	Limits         map[string]string
	Paths          string // raw YAML for paths: (e.g. "allow_encoded_slash: true")
	APIs           []apiConfig
	Extra          string // raw YAML appended at the top level
}

func (c gwConfig) render() string {
	var b strings.Builder
	b.WriteString("# written by the server end-to-end tests\nversion: 1\nlisten:\n  https: 127.0.0.1:0\n")
	if c.PlainHTTP {
		b.WriteString("  http: 127.0.0.1:0\n")
	}
	if c.AllowPlaintext {
		b.WriteString("  allow_plaintext: true\n")
	}
	b.WriteString("  tls:\n    dev_cert: true\n    cert: certs/gateway.crt\n    key: certs/gateway.key\n")
	if c.MinVersion != "" {
		fmt.Fprintf(&b, "    min_version: %q\n", c.MinVersion)
	}
	if len(c.TrustedProxies) > 0 {
		fmt.Fprintf(&b, "  trusted_proxies: [%s]\n", quoteList(c.TrustedProxies))
	}
	b.WriteString("admin:\n  listen: 127.0.0.1:0\n")
	if !c.NoAdminToken {
		b.WriteString("  token: ${GH_TEST_ADMIN_TOKEN}\n")
	}
	b.WriteString("store:\n  sqlite: data/gatehouse.db\n")
	if len(c.Limits) > 0 {
		b.WriteString("limits:\n")
		keys := make([]string, 0, len(c.Limits))
		for k := range c.Limits {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s: %s\n", k, c.Limits[k])
		}
	}
	if c.Paths != "" {
		fmt.Fprintf(&b, "paths:\n  %s\n", c.Paths)
	}
	if len(c.APIs) > 0 {
		b.WriteString("apis:\n")
	}
	for _, a := range c.APIs {
		fmt.Fprintf(&b, "  - name: %s\n    version: %s\n    owner: {team: e2e, contact: e2e@example.com}\n", a.Name, a.Version)
		if a.Lifecycle != "" {
			fmt.Fprintf(&b, "    lifecycle: %s\n", a.Lifecycle)
		}
		fmt.Fprintf(&b, "    spec: specs/%s\n    upstream: %s\n    route:\n      base_path: %s\n", a.Spec, a.Upstream, a.BasePath)
		if a.Host != "" {
			fmt.Fprintf(&b, "      host: %s\n", a.Host)
		}
		if a.KeepBasePath {
			b.WriteString("      keep_base_path: true\n")
		}
		// Every operation public: these tests are about the listener,
		// routing and proxy, not identity (deny by default otherwise).
		b.WriteString("    policies: [{operation: \"*\", public: true}]\n")
		b.WriteString(a.APIExtra)
	}
	b.WriteString(c.Extra)
	return b.String()
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

func ordersAPI(upstream string) apiConfig {
	return apiConfig{Name: "orders", Version: "v1", Spec: "orders-v1.yaml", Upstream: upstream, BasePath: "/orders/v1"}
}

func billingAPI(upstream string) apiConfig {
	return apiConfig{Name: "billing", Version: "v1", Spec: "billing-v1.yaml", Upstream: upstream, BasePath: "/billing/v1"}
}

// ---------------------------------------------------------------------------
// Gateway harness

type gw struct {
	t       *testing.T
	dir     string
	cfgPath string
	srv     *server.Server
	logs    *syncBuffer
	roots   *x509.CertPool
	h2, h1  *http.Client
	admin   *http.Client
}

// syncBuffer collects the gateway's logs; dumped when a test fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 4<<20 { // bounded: a load test logs little, but be safe
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// prepareDir makes a temp dir holding the spec fixtures and the config.
func prepareDir(t *testing.T, cfg string) (dir, cfgPath string) {
	t.Helper()
	dir = t.TempDir()
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
	cfgPath = filepath.Join(dir, "gatehouse.yaml")
	writeFileAtomic(t, cfgPath, cfg)
	return dir, cfgPath
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, to, string(b))
}

// writeFileAtomic replaces a file by rename, as editors and config managers
// do, so a watcher never reads half a file.
func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type startOpt func(*server.Options)

func withWatch(o *server.Options) { o.Watch = true }

// startGateway writes cfg into a temp dir and starts a gateway on it.
func startGateway(t *testing.T, cfg gwConfig, opts ...startOpt) *gw {
	t.Helper()
	dir, cfgPath := prepareDir(t, cfg.render())
	logs := &syncBuffer{}
	o := server.Options{
		ConfigPath: cfgPath,
		Version:    "e2e-test",
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Env:        testEnv,
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, o)
	if err != nil {
		t.Fatalf("server.Start: %v\nconfig:\n%s", err, cfg.render())
	}
	g := &gw{t: t, dir: dir, cfgPath: cfgPath, srv: srv, logs: logs}
	pem, err := os.ReadFile(filepath.Join(dir, "certs", "gateway.crt"))
	if err != nil {
		srv.Close()
		t.Fatalf("read generated certificate: %v", err)
	}
	g.roots = x509.NewCertPool()
	if !g.roots.AppendCertsFromPEM(pem) {
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
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	return g
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// transport is a client transport that verifies the gateway's certificate
// and speaks exactly one protocol: HTTP/2 or HTTP/1.1.
func (g *gw) transport(h2 bool) *http.Transport {
	p := new(http.Protocols)
	if h2 {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Transport{
		Proxy:                 nil,
		TLSClientConfig:       &tls.Config{RootCAs: g.roots},
		Protocols:             p,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   16,
		ResponseHeaderTimeout: 15 * time.Second,
	}
}

func (g *gw) base() string { return "https://" + g.srv.HTTPSAddr() }

// client returns the HTTP/2 or HTTP/1.1 client by protocol name.
func (g *gw) client(proto string) *http.Client {
	if proto == "h2" {
		return g.h2
	}
	return g.h1
}

var protos = []string{"h2", "h1"}

// reqOpts tune one request.
type reqOpts struct {
	host   string
	header http.Header
	body   io.Reader
}

// do sends a request through the gateway and reads the whole response.
func (g *gw) do(t *testing.T, c *http.Client, method, path string, o reqOpts) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := g.try(c, method, path, o)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, body
}

func (g *gw) try(c *http.Client, method, path string, o reqOpts) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, g.base()+path, o.body)
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range o.header {
		req.Header[k] = vs
	}
	if o.host != "" {
		req.Host = o.host
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, body, err
}

// get is do for a GET without options.
func (g *gw) get(t *testing.T, c *http.Client, path string) (*http.Response, []byte) {
	t.Helper()
	return g.do(t, c, http.MethodGet, path, reqOpts{})
}

// dialTLS opens a verified TLS connection for hand-written HTTP/1.1.
func (g *gw) dialTLS(t *testing.T) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", g.srv.HTTPSAddr(), &tls.Config{RootCAs: g.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// raw writes a hand-made HTTP/1.1 request (so nothing cleans the request
// target) and reads one response. head tells ReadResponse there is no body.
func (g *gw) raw(t *testing.T, request string, head bool) (*http.Response, []byte, error) {
	t.Helper()
	conn := g.dialTLS(t)
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		return nil, nil, err
	}
	var req *http.Request
	if head {
		req = &http.Request{Method: http.MethodHead}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, body, err
}

// rawRequest builds a request by hand: "METHOD target HTTP/1.1", Host, the
// given header lines, Connection: close.
func rawRequest(method, target, host string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, h := range headers {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}

// adminDo calls the admin listener (plain HTTP on loopback) with an
// optional bearer token.
func (g *gw) adminDo(t *testing.T, method, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+g.srv.AdminAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := g.admin.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatalf("admin %s %s: read body: %v", method, path, err)
	}
	return resp, body
}

// scrape returns the admin listener's /metrics text.
func (g *gw) scrape(t *testing.T) string {
	t.Helper()
	resp, body := g.adminDo(t, http.MethodGet, "/metrics", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(body)
}

// metricValue sums the samples of name whose labels include every
// key="value" pair in labels (Prometheus text format).
func metricValue(text, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var lbl string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			lbl, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // a longer metric name
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(","+lbl+",", ","+labels[i]+"="+strconv.Quote(labels[i+1])+",") {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// eventually polls cond every 20ms until it is true or the time is up.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoed decodes the echo upstream's JSON body from a gateway response.
func echoed(t *testing.T, resp *http.Response, body []byte) seenRequest {
	t.Helper()
	var s seenRequest
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("want the upstream's 200 echo, got %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("echo body: %v: %s", err, body)
	}
	return s
}

// ---------------------------------------------------------------------------
// Problem responses

type problemBody struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

// leakMarkers are fragments of Go error text and internal topology that a
// problem response must never carry.
var leakMarkers = []string{
	"127.0.0.1", "[::1]", "dial", "tcp", "connection refused", "reset by peer", "EOF", "context deadline",
	"context canceled", "timeout awaiting", "net/http", "http: ", "goroutine", ".go:", "panic", "proxy error",
}

// assertProblem checks an RFC 9457 response: status, media type, the
// stable type, a title, the status echoed, a request_id equal to the
// X-Request-Id header, and nothing internal.
func assertProblem(t *testing.T, resp *http.Response, body []byte, status int, kind string) problemBody {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body: %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p problemBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body does not decode strictly: %v: %s", err, body)
	}
	if p.Type != gateway.ProblemBase+kind {
		t.Errorf("type %q, want %q", p.Type, gateway.ProblemBase+kind)
	}
	if p.Title == "" {
		t.Error("problem has no title")
	}
	if p.Status != status {
		t.Errorf("problem status %d, want %d", p.Status, status)
	}
	hdr := resp.Header.Get("X-Request-Id")
	if hdr == "" || p.RequestID != hdr {
		t.Errorf("request_id %q, X-Request-Id header %q: want equal and non-empty", p.RequestID, hdr)
	}
	text := strings.ReplaceAll(string(body), p.RequestID, "")
	for _, m := range leakMarkers {
		if strings.Contains(strings.ToLower(text), strings.ToLower(m)) {
			t.Errorf("problem body leaks %q: %s", m, body)
		}
	}
	return p
}

// isHexID reports whether s looks like a gateway-generated request ID.
func isHexID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// isClosedErr reports whether err means the peer closed or reset the
// connection (as opposed to our own deadline firing).
func isClosedErr(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}
