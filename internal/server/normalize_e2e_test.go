package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/route"
)

// TestNormalisationAttacks sends hand-written request lines over TLS, so no
// client library cleans the target first. Each row states the status and,
// when the request reaches the upstream, the exact path the upstream saw:
// the gateway's normalised path minus the base path. The echo upstream's
// /admin/ handler (not in the spec) must never be reached.
func TestNormalisationAttacks(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}})
	hostport := g.srv.HTTPSAddr()

	cases := []struct {
		name   string
		method string // GET when empty
		target string // the request-target, byte for byte
		status int
		upPath string // wire path at the upstream when status is 200
		kind   string // problem type when status is 4xx; "" = refused by net/http before the gateway (plain text)
	}{
		// Benign twins.
		{name: "plain list", target: "/orders/v1/orders", status: 200, upPath: "/orders"},
		{name: "plain get", target: "/orders/v1/orders/1", status: 200, upPath: "/orders/1"},

		// Dot segments resolve before routing; the result is what is routed
		// and forwarded, never anything the upstream resolves differently.
		{name: "dotdot out of the API to admin", target: "/orders/v1/../../admin", status: 404, kind: "not-found"},
		{name: "dotdot to upstream admin under base path", target: "/orders/v1/orders/../../../admin/", status: 404, kind: "not-found"},
		{name: "encoded dotdot", target: "/orders/v1/%2e%2e/admin", status: 404, kind: "not-found"},
		{name: "encoded dotdot mixed case", target: "/orders/v1/orders/%2E%2e/.%2E/%2e./admin", status: 404, kind: "not-found"},
		{name: "dotdot above root lands on the API", target: "/%2e%2e/../orders/v1/orders", status: 200, upPath: "/orders"},
		{name: "dotdot into another id", target: "/orders/v1/orders/1/../2", status: 200, upPath: "/orders/2"},
		{name: "single dots", target: "/orders/v1/./orders/./7", status: 200, upPath: "/orders/7"},
		{name: "tomcat ..; traversal", target: "/orders/v1/orders/..;/..;/..;/admin/", status: 404, kind: "not-found"},

		// Case, slashes, trailing slash.
		{name: "upper-case base path", target: "/ORDERS/v1/orders", status: 404, kind: "not-found"},
		{name: "upper-case resource", target: "/orders/v1/ORDERS", status: 404, kind: "not-found"},
		{name: "double slash collapses", target: "/orders/v1//orders/1", status: 200, upPath: "/orders/1"},
		{name: "leading double slash is a path not an authority", target: "//orders/v1/orders", status: 200, upPath: "/orders"},
		{name: "many slashes", target: "///orders///v1///orders///3", status: 200, upPath: "/orders/3"},
		{name: "trailing slash is another path", target: "/orders/v1/orders/", status: 404, kind: "not-found"},
		{name: "encoded dot id", target: "/orders/v1/orders/%2e", status: 404, kind: "not-found"},

		// Escapes.
		{name: "encoded unreserved letter", target: "/orders/v1/%6Frders/%31", status: 200, upPath: "/orders/1"},
		{name: "encoded hyphen decoded", target: "/orders/v1/customers/c%2D100/orders", status: 200, upPath: "/customers/c-100/orders"},
		{name: "lower-case hex upper-cased", target: "/orders/v1/orders/a%2ab", status: 200, upPath: "/orders/a%2Ab"},
		{name: "encoded space kept", target: "/orders/v1/orders/a%20b", status: 200, upPath: "/orders/a%20b"},
		{name: "double-encoded dots are data", target: "/orders/v1/orders/%252e%252e", status: 200, upPath: "/orders/%252e%252e"},
		{name: "double-encoded dots then admin", target: "/orders/v1/orders/%252e%252e/%252e%252e/admin", status: 404, kind: "not-found"},
		{name: "double-encoded slash is data", target: "/orders/v1/orders/1%252F..%252Fadmin", status: 200, upPath: "/orders/1%252F..%252Fadmin"},
		{name: "encoded slash traversal", target: "/orders/v1/orders/1%2F..%2F..%2Fadmin", status: 400, kind: "bad-path"},
		{name: "encoded slash lower-case", target: "/orders/v1/orders%2f1", status: 400, kind: "bad-path"},
		{name: "encoded backslash", target: "/orders/v1/orders/1%5C..%5Cadmin", status: 400, kind: "bad-path"},
		{name: "raw backslash", target: `/orders/v1/orders\..\..\admin`, status: 400, kind: "bad-path"},
		{name: "encoded NUL", target: "/orders/v1/orders/1%00", status: 400, kind: "bad-path"},
		{name: "encoded NUL before extension", target: "/orders/v1/orders/1%00.json", status: 400, kind: "bad-path"},
		{name: "encoded CRLF", target: "/orders/v1/orders/1%0d%0aX-Role:%20admin", status: 400, kind: "bad-path"},
		{name: "overlong UTF-8 dot", target: "/orders/v1/orders/%C0%AE%C0%AE/%C0%AE%C0%AE/admin", status: 400, kind: "bad-path"},
		{name: "overlong UTF-8 slash", target: "/orders/v1/orders/1%C0%AF..%C0%AFadmin", status: 400, kind: "bad-path"},
		// Malformed escapes fail net/http's request-URI parse: a plain 400
		// before the gateway runs, so no problem+json, but never forwarded.
		{name: "truncated escape", target: "/orders/v1/orders/1%", status: 400},
		{name: "non-hex escape", target: "/orders/v1/orders/%zz", status: 400},
		{name: "IIS %u escape", target: "/orders/v1/orders/%u002e%u002e", status: 400},
		{name: "raw UTF-8 encoded", target: "/orders/v1/orders/caf\xc3\xa9", status: 200, upPath: "/orders/caf%C3%A9"},
		{name: "raw invalid UTF-8", target: "/orders/v1/orders/\xff", status: 400, kind: "bad-path"},

		// Path parameters (;...) are removed; an escaped %3B is data.
		{name: "jsessionid on collection", target: "/orders/v1/orders;jsessionid=ABC123", status: 200, upPath: "/orders"},
		{name: "jsessionid on id", target: "/orders/v1/orders/1;jsessionid=x", status: 200, upPath: "/orders/1"},
		{name: "matrix param on base path", target: "/orders;x=1/v1/orders", status: 200, upPath: "/orders"},
		{name: "encoded semicolon is data", target: "/orders/v1/orders/1%3Bx", status: 200, upPath: "/orders/1%3Bx"},

		// Raw characters that may not appear in a path are encoded.
		{name: "fragment in request line", target: "/orders/v1/orders/1#frag", status: 200, upPath: "/orders/1%23frag"},
		{name: "raw quote and brackets", target: `/orders/v1/orders/"<x>"`, status: 200, upPath: "/orders/%22%3Cx%3E%22"},
		{name: "query cannot carry the path", target: "/orders/v1/orders/1?../../admin", status: 200, upPath: "/orders/1"},

		// Sub-delimiters are kept as sent, raw or escaped (route package
		// contract), so the upstream must see them as sent.
		{name: "raw sub-delims kept", target: "/orders/v1/orders/a!b*c'(d)", status: 200, upPath: "/orders/a!b*c'(d)"},
		{name: "raw star id", target: "/orders/v1/orders/*", status: 200, upPath: "/orders/*"},
		{name: "raw sub-delim with an escape elsewhere", target: "/orders/v1/orders/a!b%20", status: 200, upPath: "/orders/a!b%20"},
		{name: "escaped sub-delim kept", target: "/orders/v1/orders/a%21b", status: 200, upPath: "/orders/a%21b"},
		{name: "raw colon and at", target: "/orders/v1/orders/a:b@c", status: 200, upPath: "/orders/a:b@c"},

		// Request-target forms other than origin-form.
		{name: "absolute-form", target: "https://" + hostport + "/orders/v1/orders/1", status: 200, upPath: "/orders/1"},
		{name: "absolute-form with traversal", target: "https://" + hostport + "/orders/v1/%2e%2e/%2e%2e/admin/", status: 404, kind: "not-found"},
		{name: "absolute-form other host", target: "https://evil.example/orders/v1/orders", status: 200, upPath: "/orders"},
		{name: "asterisk-form GET", target: "*", status: 400, kind: "bad-path"},
		{name: "authority-form CONNECT", method: "CONNECT", target: hostport, status: 400, kind: "bad-path"},
	}
	sent := 0
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			method := tc.method
			if method == "" {
				method = "GET"
			}
			id := fmt.Sprintf("norm-row-%03d-x", i)
			resp, body, err := g.raw(t, rawRequest(method, tc.target, "127.0.0.1", "X-Request-Id: "+id), false)
			if err != nil {
				t.Fatalf("%s %q: %v", method, tc.target, err)
			}
			seen := up.byRequestID(id)
			if tc.status != 200 && tc.kind == "" {
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d from net/http: %s", resp.StatusCode, tc.status, body)
				}
				if len(seen) != 0 {
					t.Fatalf("refused request reached the upstream as %q", seen[0].WirePath)
				}
				return
			}
			if tc.status != 200 {
				assertProblem(t, resp, body, tc.status, tc.kind)
				if len(seen) != 0 {
					t.Fatalf("refused request reached the upstream as %q", seen[0].WirePath)
				}
				return
			}
			s := echoed(t, resp, body)
			if s.WirePath != tc.upPath {
				t.Errorf("upstream saw %q, want %q", s.WirePath, tc.upPath)
			}
			if len(seen) != 1 {
				t.Errorf("upstream saw %d requests with id %s, want 1", len(seen), id)
			}
			// The property itself: upstream path == Normalize(raw path) minus
			// the base path.
			raw := tc.target
			if strings.HasPrefix(raw, "https://") {
				raw = raw[strings.Index(raw[len("https://"):], "/")+len("https://"):]
			}
			if i := strings.IndexByte(raw, '?'); i >= 0 {
				raw = raw[:i]
			}
			norm, err := route.Normalize(raw, route.NormalizeOptions{})
			if err != nil {
				t.Fatalf("route.Normalize(%q): %v, but the gateway forwarded it", raw, err)
			}
			if want := strings.TrimPrefix(norm, "/orders/v1"); s.WirePath != want {
				t.Errorf("upstream saw %q, but normalised path minus base path is %q", s.WirePath, want)
			}
		})
		sent++
	}
	t.Logf("%d normalisation rows", sent)
}

// TestOptionsAsterisk: "OPTIONS *" goes through the pipeline, which refuses
// it as a bad path, and never reaches an upstream.
func TestOptionsAsterisk(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}})
	resp, _, err := g.raw(t, rawRequest("OPTIONS", "*", "127.0.0.1"), false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("OPTIONS *: status %d %s, want a 400 problem", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if up.count() != 0 {
		t.Fatal("OPTIONS * reached the upstream")
	}
}
