package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRequestSmuggling: ambiguous framing on the client side must never
// turn into a second request on the upstream connection. The gateway
// re-frames every body it forwards, so the upstream sees only requests the
// gateway routed; a smuggled request either is refused by net/http or
// arrives at the gateway as a request of its own and is routed (here: to
// nothing). The upstream-only /admin/ handler must stay unreached.
func TestRequestSmuggling(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}})
	smuggled := "GET /admin/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
	cases := []struct {
		name    string
		headers string
		body    string
		first   []int // acceptable statuses of the first response
	}{
		{"CL.TE", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n" + smuggled, []int{200, 400}},
		{"TE.CL", "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "5\r\nhello\r\n0\r\n\r\n" + smuggled, []int{200, 400}},
		{"two different Content-Lengths", "Content-Length: 0\r\nContent-Length: 44\r\n", smuggled, []int{400}},
		{"obfuscated TE", "Transfer-Encoding: xchunked\r\nContent-Length: 0\r\n", smuggled, []int{400, 501}},
		{"TE list", "Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n" + smuggled, []int{400, 501}},
		{"TE with space before colon", "Transfer-Encoding : chunked\r\nContent-Length: 0\r\n", "0\r\n\r\n" + smuggled, []int{400}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("smuggle-row-%02d-x", i)
			conn := g.dialTLS(t)
			req := "POST /orders/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: " + id + "\r\n" + tc.headers + "\r\n" + tc.body
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			br := bufio.NewReader(conn)
			for n := 0; n < 3; n++ { // the first response, and any for a pipelined leftover
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					if n == 0 {
						t.Fatalf("no response: %v", err)
					}
					break
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
				resp.Body.Close()
				if strings.Contains(string(body), "admin panel") {
					t.Fatalf("smuggled request reached the upstream's /admin/: %s", body)
				}
				if n == 0 && !containsInt(tc.first, resp.StatusCode) {
					t.Errorf("first response %d, want one of %v: %s", resp.StatusCode, tc.first, body)
				}
				if n > 0 && resp.StatusCode == http.StatusOK {
					t.Errorf("leftover bytes were served as a request: %d %s", resp.StatusCode, body)
				}
				if resp.Close {
					break
				}
				// A pipelined leftover is answered at once, or never.
				_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			}
			for _, s := range up.byRequestID(id) {
				if s.Method != http.MethodPost || s.WirePath != "/orders" {
					t.Errorf("upstream saw %s %s", s.Method, s.WirePath)
				}
			}
			if n := len(up.byRequestID(id)); n > 1 {
				t.Errorf("upstream saw %d requests for one client request", n)
			}
		})
	}
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestConnectionClosedAfterAmbiguousFraming: RFC 9112 §6.1: a server that
// processes a request with both Content-Length and Transfer-Encoding "MUST
// close the connection after responding to such a request". Otherwise,
// behind a front proxy that framed the request by Content-Length, the bytes
// after the chunked body become the next request on the gateway's side of
// a shared connection (CL.TE desync): another user's response can be
// poisoned, and the smuggled request is attributed to the wrong client.
func TestConnectionClosedAfterAmbiguousFraming(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}})
	conn := g.dialTLS(t)
	req := "POST /orders/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\nGET /orders/v1/orders/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !resp.Close {
		t.Errorf("response to a Content-Length + Transfer-Encoding request does not close the connection")
	}
	if resp2, err := http.ReadResponse(br, nil); err == nil {
		resp2.Body.Close()
		t.Errorf("the bytes after the chunked body were served as a request: %d", resp2.StatusCode)
	}
	if n := up.count(); n > 1 {
		t.Errorf("upstream saw %d requests for one client request", n)
	}
}
