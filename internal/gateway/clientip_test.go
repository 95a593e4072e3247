package gateway

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := TrustedProxies{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	tests := []struct {
		name   string
		t      TrustedProxies
		remote string
		xff    []string
		want   string
	}{
		{"no trusted proxies: XFF ignored", nil, "203.0.113.9:1234", []string{"1.2.3.4"}, "203.0.113.9"},
		{"untrusted peer: XFF ignored", trusted, "203.0.113.9:1234", []string{"1.2.3.4"}, "203.0.113.9"},
		{"trusted peer: last untrusted hop", trusted, "10.1.1.1:80", []string{"1.2.3.4, 198.51.100.7"}, "198.51.100.7"},
		{"trusted chain skipped", trusted, "10.1.1.1:80", []string{"198.51.100.7, 10.2.2.2", "10.3.3.3"}, "198.51.100.7"},
		{"spoofed left entry not believed", trusted, "127.0.0.1:80", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7"},
		{"garbage hop ends chain", trusted, "10.1.1.1:80", []string{"6.6.6.6, garbage, 10.2.2.2"}, "10.2.2.2"},
		{"all trusted: leftmost", trusted, "10.1.1.1:80", []string{"10.9.9.9"}, "10.9.9.9"},
		{"trusted peer without XFF", trusted, "10.1.1.1:80", nil, "10.1.1.1"},
		{"ipv6 peer", nil, "[2001:db8::1]:443", nil, "2001:db8::1"},
		{"v4-mapped v6 unmapped", trusted, "[::ffff:10.1.1.1]:80", []string{"198.51.100.7"}, "198.51.100.7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.t.ClientIP(tc.remote, tc.xff).String(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestForwardedFor(t *testing.T) {
	trusted := TrustedProxies{netip.MustParsePrefix("127.0.0.1/32")}
	r := &http.Request{RemoteAddr: "203.0.113.9:5", Header: http.Header{"X-Forwarded-For": {"6.6.6.6"}}}
	if got := forwardedFor(trusted, r, "203.0.113.9"); got != "203.0.113.9" {
		t.Fatalf("untrusted peer's XFF passed on: %q", got)
	}
	r = &http.Request{RemoteAddr: "127.0.0.1:5", Header: http.Header{"X-Forwarded-For": {"198.51.100.7"}}}
	if got := forwardedFor(trusted, r, "198.51.100.7"); got != "198.51.100.7, 127.0.0.1" {
		t.Fatalf("trusted chain: %q", got)
	}
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"abcd1234":                true,
		"0f8fad5b-d9cb-469f-a165": true,
		"short":                   false,
		"has space in it":         false,
		"new\nline-injected":      false,
		`quote"d-value`:           false,
		strings.Repeat("a", 64):   true,
		strings.Repeat("a", 65):   false,
	} {
		if got := validRequestID(id); got != want {
			t.Errorf("validRequestID(%q) = %v", id, got)
		}
	}
	if a, b := newRequestID(), newRequestID(); a == b || len(a) != 32 || !validRequestID(a) {
		t.Fatalf("generated IDs %q %q", a, b)
	}
}

func TestStripIdentityHeaders(t *testing.T) {
	h := http.Header{}
	for _, k := range append(spoofableHeaders, "X-Gatehouse-Consumer", "X-Consumer-Id", "X-Partner-Name", "X-Credential-Id") {
		h.Set(k, "evil")
	}
	h.Set("Accept", "application/json")
	stripIdentityHeaders(h)
	if len(h) != 1 || h.Get("Accept") == "" {
		t.Fatalf("left: %v", h)
	}
}

func TestRawPath(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://h/a%2Fb?q=1", nil)
	r.RequestURI = "/a%2Fb/../c?q=1"
	if p, ok := rawPath(r); !ok || p != "/a%2Fb/../c" {
		t.Fatalf("origin-form: %q", p)
	}
	r.RequestURI = "http://h/a%2Fb"
	if p, ok := rawPath(r); !ok || p != "/a%2Fb" {
		t.Fatalf("absolute-form: %q", p)
	}
	r.RequestURI = "*"
	if _, ok := rawPath(r); ok {
		t.Fatal("asterisk-form accepted")
	}
}
