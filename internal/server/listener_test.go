package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func plainClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second, CheckRedirect: noRedirects}
}

// TestPlainHTTPRedirects: listen.http without allow_plaintext answers every
// request with a 308 to the same path and query on the HTTPS listener and
// never proxies.
func TestPlainHTTPRedirects(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{PlainHTTP: true, APIs: []apiConfig{ordersAPI(up.URL())}})
	_, httpsPort, _ := net.SplitHostPort(g.srv.HTTPSAddr())
	c := plainClient(t)
	cases := []struct{ method, path string }{
		{"GET", "/orders/v1/orders"},
		{"GET", "/orders/v1/orders/1?limit=5&q=a%20b"},
		{"POST", "/orders/v1/orders"},
		{"DELETE", "/orders/v1/orders/1"},
		{"GET", "/nope?x=1"},
		{"GET", "/orders/v1/%2e%2e/admin/"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://"+g.srv.HTTPAddr()+tc.path, strings.NewReader("body"))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusPermanentRedirect {
				t.Fatalf("status %d, want 308", resp.StatusCode)
			}
			want := "https://127.0.0.1:" + httpsPort + tc.path
			if got := resp.Header.Get("Location"); got != want {
				t.Errorf("Location %q, want %q", got, want)
			}
		})
	}
	if up.count() != 0 {
		t.Fatalf("the redirecting plain listener proxied %d requests", up.count())
	}
	// Following the redirect over verified TLS reaches the API.
	resp, err := c.Get("http://" + g.srv.HTTPAddr() + "/orders/v1/orders/7?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, g.base()) {
		t.Fatalf("Location %q is not on %s", loc, g.base())
	}
	resp, body := g.get(t, g.h2, strings.TrimPrefix(loc, g.base()))
	s := echoed(t, resp, body)
	if s.WirePath != "/orders/7" || s.Query != "x=1" {
		t.Errorf("after redirect the upstream saw %q ? %q", s.WirePath, s.Query)
	}
}

// TestPlainHTTPAllowed: allow_plaintext serves APIs on the plain listener,
// telling the upstream the scheme was http.
func TestPlainHTTPAllowed(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{PlainHTTP: true, AllowPlaintext: true, APIs: []apiConfig{ordersAPI(up.URL())}})
	c := plainClient(t)
	resp, err := c.Get("http://" + g.srv.HTTPAddr() + "/orders/v1/orders/3?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := echoed(t, resp, body)
	if s.WirePath != "/orders/3" || s.Query != "x=1" {
		t.Errorf("upstream saw %q ? %q", s.WirePath, s.Query)
	}
	if got := s.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto %q, want http", got)
	}
	// The plain listener runs the same pipeline: unknown paths are refused.
	resp, err = c.Get("http://" + g.srv.HTTPAddr() + "/orders/v1/../../admin/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assertProblem(t, resp, body, 404, "not-found")
}

// handshake dials the gateway with cfg (RootCAs filled in) and reports the
// negotiated state or the handshake error.
func (g *gw) handshake(t *testing.T, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	if cfg.RootCAs == nil {
		cfg.RootCAs = g.roots
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", g.srv.HTTPSAddr(), cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

var cbcSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// TestTLS: the listener speaks TLS 1.2 with forward-secret AEAD suites and
// TLS 1.3, negotiates HTTP/2 by ALPN, and refuses the rest.
func TestTLS(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}})
	cases := []struct {
		name    string
		cfg     *tls.Config
		ok      bool
		version uint16
		alpn    string
		refusal string // part of the handshake error: "remote error" proves the server said no
	}{
		{name: "TLS 1.0 refused", cfg: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, refusal: "remote error"},
		{name: "TLS 1.1 refused", cfg: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, refusal: "remote error"},
		{name: "TLS 1.2 CBC-only refused", cfg: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbcSuites}, refusal: "remote error"},
		{name: "TLS 1.2 GCM", cfg: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, ok: true, version: tls.VersionTLS12},
		{name: "TLS 1.2 ChaCha20", cfg: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, ok: true, version: tls.VersionTLS12},
		{name: "TLS 1.3 preferred", cfg: &tls.Config{}, ok: true, version: tls.VersionTLS13},
		{name: "TLS 1.3 only", cfg: &tls.Config{MinVersion: tls.VersionTLS13}, ok: true, version: tls.VersionTLS13},
		{name: "ALPN h2", cfg: &tls.Config{NextProtos: []string{"h2", "http/1.1"}}, ok: true, version: tls.VersionTLS13, alpn: "h2"},
		{name: "ALPN http/1.1", cfg: &tls.Config{NextProtos: []string{"http/1.1"}}, ok: true, version: tls.VersionTLS13, alpn: "http/1.1"},
		{name: "untrusted by other roots", cfg: &tls.Config{RootCAs: x509.NewCertPool()}, refusal: "certificate"},
		{name: "wrong server name", cfg: &tls.Config{ServerName: "gateway.example.com"}, refusal: "certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, err := g.handshake(t, tc.cfg)
			if !tc.ok {
				if err == nil {
					t.Fatalf("handshake succeeded (version %x, suite %s), want refused", st.Version, tls.CipherSuiteName(st.CipherSuite))
				}
				if !strings.Contains(err.Error(), tc.refusal) {
					t.Errorf("handshake error %q, want one containing %q", err, tc.refusal)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if st.Version != tc.version {
				t.Errorf("version %x, want %x", st.Version, tc.version)
			}
			if st.NegotiatedProtocol != tc.alpn {
				t.Errorf("ALPN %q, want %q", st.NegotiatedProtocol, tc.alpn)
			}
		})
	}
	t.Run("HTTP/2 end to end", func(t *testing.T) {
		t.Parallel()
		resp, body := g.get(t, g.h2, "/orders/v1/orders")
		echoed(t, resp, body)
		if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
			t.Errorf("proto %s, ALPN %v: want HTTP/2 over h2", resp.Proto, resp.TLS)
		}
	})
}

// TestTLSMinVersion13: listen.tls.min_version "1.3" refuses TLS 1.2.
func TestTLSMinVersion13(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{MinVersion: "1.3", APIs: []apiConfig{ordersAPI(up.URL())}})
	if st, err := g.handshake(t, &tls.Config{MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatalf("TLS 1.2 accepted (suite %s) with min_version 1.3", tls.CipherSuiteName(st.CipherSuite))
	} else if !strings.Contains(err.Error(), "remote error") {
		t.Errorf("TLS 1.2: %v, want the server to refuse", err)
	}
	st, err := g.handshake(t, &tls.Config{})
	if err != nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3: version %x, err %v", st.Version, err)
	}
	resp, body := g.get(t, g.h1, "/orders/v1/orders")
	echoed(t, resp, body)
}
