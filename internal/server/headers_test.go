package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// spoofedHeaders are identity and routing headers a client may try to plant;
// none of its values may reach the upstream.
var spoofedHeaders = http.Header{
	"X-Forwarded-For":      {"6.6.6.6"},
	"X-Real-Ip":            {"6.6.6.6"},
	"Forwarded":            {"for=6.6.6.6;proto=http;host=evil.example"},
	"X-Original-Url":       {"/admin/"},
	"X-Rewrite-Url":        {"/admin/"},
	"X-Gatehouse-Consumer": {"root"},
	"X-Consumer-Id":        {"1"},
	"X-Forwarded-Host":     {"evil.example"},
	"X-Forwarded-Proto":    {"http"},
	"X-Forwarded-Port":     {"80"},
	"X-Forwarded-Prefix":   {"/admin"},
	"X-Client-Ip":          {"6.6.6.6"},
	"True-Client-Ip":       {"6.6.6.6"},
	"Cf-Connecting-Ip":     {"6.6.6.6"},
	"X-Partner-Id":         {"acme"},
	"X-Credential-Id":      {"cred-1"},
	"X-Authenticated-User": {"admin"},
}

// TestSpoofedHeadersNeverReachUpstream: whatever identity the client
// claims, the upstream sees only what the gateway itself established.
func TestSpoofedHeadersNeverReachUpstream(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}})
	for _, proto := range protos {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			resp, body := g.do(t, g.client(proto), http.MethodGet, "/orders/v1/orders", reqOpts{header: spoofedHeaders.Clone()})
			s := echoed(t, resp, body)
			for name, vals := range s.Header {
				for _, v := range vals {
					if strings.Contains(v, "6.6.6.6") || strings.Contains(v, "evil.example") || strings.Contains(v, "/admin") ||
						v == "root" || v == "acme" || v == "cred-1" {
						t.Errorf("upstream received spoofed %s: %q", name, v)
					}
				}
			}
			for _, h := range []string{"Forwarded", "X-Original-Url", "X-Rewrite-Url", "X-Gatehouse-Consumer", "X-Consumer-Id",
				"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip",
				"X-Partner-Id", "X-Credential-Id", "X-Authenticated-User"} {
				if v, ok := s.Header[h]; ok {
					t.Errorf("upstream received %s: %q", h, v)
				}
			}
			want := map[string]string{
				"X-Forwarded-For":   "127.0.0.1",
				"X-Real-Ip":         "127.0.0.1",
				"X-Forwarded-Proto": "https",
				"X-Forwarded-Host":  g.srv.HTTPSAddr(),
				"X-Request-Id":      resp.Header.Get("X-Request-Id"),
			}
			for h, w := range want {
				if got := s.Header.Values(h); len(got) != 1 || got[0] != w {
					t.Errorf("upstream %s = %q, want exactly %q", h, got, w)
				}
			}
			if !isHexID(resp.Header.Get("X-Request-Id")) {
				t.Errorf("generated X-Request-Id %q is not 128 random bits in hex", resp.Header.Get("X-Request-Id"))
			}
		})
	}
}

// TestSpoofedHeaderSpellings: backends built on CGI-style environments
// (PHP-FPM, WSGI, Rack) turn both X-Forwarded-For and X_Forwarded_For into
// HTTP_X_FORWARDED_FOR, so the underscore spelling is the same header to
// them. nginx drops such headers by default for this reason.
func TestSpoofedHeaderSpellings(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}})
	resp, body, err := g.raw(t, rawRequest("GET", "/orders/v1/orders", "127.0.0.1",
		"X_Forwarded_For: 6.6.6.6", "X_Real_IP: 6.6.6.6", "X_Gatehouse_Consumer: root", "X_Original_URL: /admin/",
		"x-forwarded-for: 7.7.7.7", "X-FORWARDED-HOST: evil.example"), false)
	if err != nil {
		t.Fatal(err)
	}
	s := echoed(t, resp, body)
	for name, vals := range s.Header {
		for _, v := range vals {
			if strings.Contains(v, "6.6.6.6") || strings.Contains(v, "7.7.7.7") || v == "root" || strings.Contains(v, "/admin") || strings.Contains(v, "evil.example") {
				t.Errorf("upstream received spoofed %s: %q", name, v)
			}
		}
	}
}

// TestRequestID: a well-formed client X-Request-Id is kept end to end; a
// malformed one is replaced by a generated ID, which the upstream and the
// client both see.
func TestRequestID(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}})
	cases := []struct {
		name  string
		raw   string // header line as written on the wire
		value string // value for Go clients (empty: raw only)
		keep  bool
	}{
		{name: "uuid kept", value: "2f1c6a8e-4b7d-4e2a-9c3f-0d8b5e6f7a21", keep: true},
		{name: "8 chars kept", value: "abcd-123", keep: true},
		{name: "64 chars kept", value: strings.Repeat("a1._-", 12) + "abcd", keep: true},
		{name: "too short", value: "abc1234"},
		{name: "65 chars", value: strings.Repeat("a", 65)},
		{name: "200 chars", value: strings.Repeat("r", 200)},
		{name: "quotes", value: `"abcdefgh"`},
		{name: "spaces", value: "abcd efgh ijkl"},
		{name: "html", value: "<script>alert(1)</script>"},
		{name: "slashes", value: "../../etc/passwd"},
		{name: "unicode", value: "abcdefgh\u00e9"},
		{name: "log injection by obs-fold newline", raw: "X-Request-Id: abcdefgh\r\n injected=1"},
	}
	for _, tc := range cases {
		for _, proto := range []string{"h2", "h1", "raw"} {
			if (proto == "raw") != (tc.raw != "") {
				continue
			}
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				var resp *http.Response
				var body []byte
				if proto == "raw" {
					var err error
					resp, body, err = g.raw(t, rawRequest("GET", "/orders/v1/orders", "127.0.0.1", tc.raw), false)
					if err != nil {
						t.Fatal(err)
					}
					if resp.StatusCode == http.StatusBadRequest {
						return // net/http refused the folded header outright: also fine
					}
				} else {
					resp, body = g.do(t, g.client(proto), http.MethodGet, "/orders/v1/orders",
						reqOpts{header: http.Header{"X-Request-Id": {tc.value}}})
				}
				s := echoed(t, resp, body)
				got := resp.Header.Get("X-Request-Id")
				if up := s.Header.Get("X-Request-Id"); up != got {
					t.Errorf("upstream saw X-Request-Id %q, client got %q", up, got)
				}
				if tc.keep {
					if got != tc.value {
						t.Errorf("X-Request-Id %q, want the client's %q kept", got, tc.value)
					}
					return
				}
				if !isHexID(got) {
					t.Errorf("malformed X-Request-Id not replaced by a generated one: got %q", got)
				}
				if n := len(s.Header.Values("X-Request-Id")); n != 1 {
					t.Errorf("upstream saw %d X-Request-Id values, want 1", n)
				}
			})
		}
	}
}

// TestTrustedProxyChain: behind listen.trusted_proxies the client IP is the
// rightmost untrusted X-Forwarded-For entry, and the chain is passed on with
// the proxy appended; a malformed hop ends the trust.
func TestTrustedProxyChain(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{TrustedProxies: []string{"127.0.0.1"}, APIs: []apiConfig{ordersAPI(up.URL())}})
	cases := []struct {
		name    string
		xff     []string
		client  string // X-Real-Ip at the upstream
		forward string // X-Forwarded-For at the upstream
	}{
		{name: "no header", client: "127.0.0.1", forward: "127.0.0.1"},
		{name: "one hop", xff: []string{"203.0.113.7"}, client: "203.0.113.7", forward: "203.0.113.7, 127.0.0.1"},
		{name: "rightmost untrusted wins", xff: []string{"198.51.100.1, 203.0.113.7"}, client: "203.0.113.7", forward: "198.51.100.1, 203.0.113.7, 127.0.0.1"},
		{name: "trusted hops skipped", xff: []string{"203.0.113.7, 127.0.0.1"}, client: "203.0.113.7", forward: "203.0.113.7, 127.0.0.1, 127.0.0.1"},
		{name: "several header lines", xff: []string{"198.51.100.1", "203.0.113.7"}, client: "203.0.113.7", forward: "198.51.100.1, 203.0.113.7, 127.0.0.1"},
		{name: "forged leftmost ignored", xff: []string{"1.1.1.1, 203.0.113.7"}, client: "203.0.113.7", forward: "1.1.1.1, 203.0.113.7, 127.0.0.1"},
		{name: "mapped IPv4", xff: []string{"::ffff:203.0.113.7"}, client: "203.0.113.7", forward: "::ffff:203.0.113.7, 127.0.0.1"},
		{name: "IPv6", xff: []string{"2001:db8::1"}, client: "2001:db8::1", forward: "2001:db8::1, 127.0.0.1"},
		{name: "malformed rightmost ends trust", xff: []string{"203.0.113.7, not-an-ip"}, client: "127.0.0.1", forward: "203.0.113.7, not-an-ip, 127.0.0.1"},
		{name: "all trusted", xff: []string{"127.0.0.1"}, client: "127.0.0.1", forward: "127.0.0.1, 127.0.0.1"},
	}
	for _, tc := range cases {
		for _, proto := range protos {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				h := http.Header{"X-Real-Ip": {"6.6.6.6"}, "Forwarded": {"for=6.6.6.6"}}
				if tc.xff != nil {
					h["X-Forwarded-For"] = tc.xff
				}
				resp, body := g.do(t, g.client(proto), http.MethodGet, "/orders/v1/orders", reqOpts{header: h})
				s := echoed(t, resp, body)
				if got := s.Header.Values("X-Real-Ip"); len(got) != 1 || got[0] != tc.client {
					t.Errorf("X-Real-Ip %q, want %q", got, tc.client)
				}
				if got := s.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != tc.forward {
					t.Errorf("X-Forwarded-For %q, want %q", got, tc.forward)
				}
				if _, ok := s.Header["Forwarded"]; ok {
					t.Error("Forwarded reached the upstream")
				}
			})
		}
	}
}
