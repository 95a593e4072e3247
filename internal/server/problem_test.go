package server_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestProblemResponses: every refusal and failure the gateway itself
// produces is an RFC 9457 problem with a stable type, a title, the status,
// and a request_id equal to the X-Request-Id header (the client's when it
// sent a valid one), with no Go error text, and is never cached or sniffed.
func TestProblemResponses(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	down := closedAddr(t)
	g := startGateway(t, gwConfig{
		Limits: map[string]string{"max_header_bytes": "2048", "max_body_bytes": "100", "upstream_response_timeout": "200ms"},
		APIs: []apiConfig{
			ordersAPI(up.URL()),
			{Name: "down", Version: "v1", Spec: "billing-v1.yaml", Upstream: "http://" + down, BasePath: "/down/v1"},
		},
	})
	cases := []struct {
		name, method, path string
		header             http.Header
		body               []byte
		status             int
		kind               string
	}{
		{name: "bad path", method: "GET", path: "/orders/v1/orders/1%2F..%2Fx", status: 400, kind: "bad-path"},
		{name: "not found", method: "GET", path: "/nothing/here", status: 404, kind: "not-found"},
		{name: "method not allowed", method: "PUT", path: "/orders/v1/orders", status: 405, kind: "method-not-allowed"},
		{name: "body too large", method: "POST", path: "/orders/v1/orders", body: bytes.Repeat([]byte("x"), 101), status: 413, kind: "body-too-large"},
		{name: "headers too large", method: "GET", path: "/orders/v1/orders", header: http.Header{"X-Pad": {strings.Repeat("p", 3000)}}, status: 431, kind: "headers-too-large"},
		{name: "upstream down", method: "GET", path: "/down/v1/invoices", status: 502, kind: "upstream-unavailable"},
		{name: "upstream timeout", method: "GET", path: "/orders/v1/orders?sleep=2s", status: 504, kind: "upstream-timeout"},
		{name: "upstream reset", method: "GET", path: "/orders/v1/orders?fail=close", status: 502, kind: "upstream-unavailable"},
	}
	for _, tc := range cases {
		for _, proto := range protos {
			for _, clientID := range []string{"", "client-chosen-id-42"} {
				name := tc.name + "/" + proto
				if clientID != "" {
					name += "/client-id"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					h := tc.header.Clone()
					if h == nil {
						h = http.Header{}
					}
					if clientID != "" {
						h.Set("X-Request-Id", clientID)
					}
					var body *bytes.Reader
					o := reqOpts{header: h}
					if tc.body != nil {
						body = bytes.NewReader(tc.body)
						o.body = body
					}
					resp, rbody := g.do(t, g.client(proto), tc.method, tc.path, o)
					p := assertProblem(t, resp, rbody, tc.status, tc.kind)
					if clientID != "" && p.RequestID != clientID {
						t.Errorf("request_id %q, want the client's %q", p.RequestID, clientID)
					}
					if clientID == "" && !isHexID(p.RequestID) {
						t.Errorf("generated request_id %q is not 32 hex digits", p.RequestID)
					}
					if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
						t.Errorf("Cache-Control %q, want no-store", cc)
					}
					if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
						t.Error("no X-Content-Type-Options: nosniff")
					}
				})
			}
		}
	}
}
