package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	testMaxHeader = 4096
	testMaxBody   = 1024
)

func limitsGateway(t *testing.T) (*gw, *echoUpstream) {
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{
		Limits: map[string]string{
			"max_header_bytes": fmt.Sprint(testMaxHeader),
			"max_body_bytes":   fmt.Sprint(testMaxBody),
		},
		APIs: []apiConfig{ordersAPI(up.URL())},
	})
	return g, up
}

// TestHeaderLimit: headers over limits.max_header_bytes get a 431 problem
// from the gateway (the server's own hard limit sits above it).
func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	g, up := limitsGateway(t)
	many := http.Header{}
	for i := 0; i < 80; i++ {
		many.Set(fmt.Sprintf("X-Pad-%02d", i), strings.Repeat("m", 50))
	}
	cases := []struct {
		name   string
		header http.Header
		status int
	}{
		{"under the limit", http.Header{"X-Pad": {strings.Repeat("a", testMaxHeader/2)}}, 200},
		{"one big header", http.Header{"X-Pad": {strings.Repeat("a", testMaxHeader+500)}}, 431},
		{"many small headers", many, 431},
	}
	for _, tc := range cases {
		for _, proto := range protos {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				id := "hdr-" + strings.ReplaceAll(tc.name, " ", "-") + "-" + proto
				h := tc.header.Clone()
				h.Set("X-Request-Id", id)
				resp, body := g.do(t, g.client(proto), http.MethodGet, "/orders/v1/orders", reqOpts{header: h})
				if tc.status == 200 {
					echoed(t, resp, body)
					return
				}
				assertProblem(t, resp, body, tc.status, "headers-too-large")
				if len(up.byRequestID(id)) != 0 {
					t.Error("request with oversized headers reached the upstream")
				}
			})
		}
	}
}

// TestHugeHeaderBlockRefused: a header block far above the limit is refused
// by the server itself (431 or closed connection) and the gateway goes on
// serving.
func TestHugeHeaderBlockRefused(t *testing.T) {
	t.Parallel()
	g, up := limitsGateway(t)
	conn := g.dialTLS(t)
	var b strings.Builder
	b.WriteString("GET /orders/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	for i := 0; i < 256; i++ { // 256 × ~1 KiB = 256 KiB of headers
		fmt.Fprintf(&b, "X-Huge-%03d: %s\r\n", i, strings.Repeat("h", 1000))
	}
	b.WriteString("\r\n")
	_, werr := io.WriteString(conn, b.String()) // may fail: the server may close first
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	switch {
	case err != nil:
		if werr == nil && !isClosedErr(err) {
			t.Fatalf("huge header block: neither refused nor closed: %v", err)
		}
	case resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge:
		t.Fatalf("huge header block: status %d, want 431", resp.StatusCode)
	}
	if up.count() != 0 {
		t.Fatal("huge header block reached the upstream")
	}
	resp2, body := g.get(t, g.h1, "/orders/v1/orders")
	echoed(t, resp2, body)
}

// hiddenLength hides a reader's length from net/http so the body goes out
// chunked (HTTP/1.1) or without content-length (HTTP/2).
type hiddenLength struct{ r io.Reader }

func (h hiddenLength) Read(p []byte) (int, error) { return h.r.Read(p) }

// TestBodyLimit: a declared Content-Length over limits.max_body_bytes is
// refused before the upstream is called; a body of unknown length is cut at
// the limit while streaming, so the upstream never gets a complete
// oversized body. Each has a benign twin at or under the limit.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	g, up := limitsGateway(t)
	cases := []struct {
		name    string
		size    int
		chunked bool
		status  int
	}{
		{"content-length at the limit", testMaxBody, false, 200},
		{"content-length over the limit", testMaxBody + 1, false, 413},
		{"content-length far over the limit", 64 << 10, false, 413},
		{"chunked under the limit", testMaxBody / 2, true, 200},
		{"chunked at the limit", testMaxBody, true, 200},
		{"chunked over the limit", 64 << 10, true, 413},
	}
	for _, tc := range cases {
		for _, proto := range protos {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				id := "body-" + strings.ReplaceAll(tc.name, " ", "-") + "-" + proto
				var body io.Reader = bytes.NewReader(bytes.Repeat([]byte("b"), tc.size))
				if tc.chunked {
					body = hiddenLength{body}
				}
				resp, rbody := g.do(t, g.client(proto), http.MethodPost, "/orders/v1/orders",
					reqOpts{header: http.Header{"X-Request-Id": {id}, "Content-Type": {"application/octet-stream"}}, body: body})
				if tc.status == 200 {
					s := echoed(t, resp, rbody)
					if s.BodyBytes != int64(tc.size) || s.BodyErr != "" {
						t.Errorf("upstream got %d bytes (err %q), want %d", s.BodyBytes, s.BodyErr, tc.size)
					}
					return
				}
				assertProblem(t, resp, rbody, tc.status, "body-too-large")
				if !tc.chunked {
					if seen := up.byRequestID(id); len(seen) != 0 {
						t.Fatalf("declared oversized body: upstream was called (%d bytes)", seen[0].BodyBytes)
					}
					return
				}
				// The upstream may have started reading before the cut;
				// it must never have read a complete oversized body.
				time.Sleep(50 * time.Millisecond)
				for _, s := range up.byRequestID(id) {
					if s.BodyErr == "" && s.BodyBytes > testMaxBody {
						t.Fatalf("upstream received a complete %d-byte body (limit %d)", s.BodyBytes, testMaxBody)
					}
					if s.BodyBytes > testMaxBody {
						t.Errorf("upstream read %d bytes, more than the %d-byte limit", s.BodyBytes, testMaxBody)
					}
				}
			})
		}
	}
}

// TestSlowloris: a client that never finishes its header block loses the
// connection after limits.read_header_timeout, whether it stalls or drips.
func TestSlowloris(t *testing.T) {
	// Not parallel with the other tests: with a 300ms read_header_timeout
	// (which also bounds the TLS handshake) CPU contention from the load
	// tests under -race could make the benign twin flaky.
	up := newEchoUpstream(t, "orders-backend")
	g := startGateway(t, gwConfig{
		Limits: map[string]string{"read_header_timeout": "300ms"},
		APIs:   []apiConfig{ordersAPI(up.URL())},
	})
	t.Run("benign twin", func(t *testing.T) {
		t.Parallel()
		resp, body, err := g.raw(t, rawRequest("GET", "/orders/v1/orders", "127.0.0.1"), false)
		if err != nil {
			t.Fatal(err)
		}
		echoed(t, resp, body)
	})
	t.Run("half a header line then stall", func(t *testing.T) {
		t.Parallel()
		conn := g.dialTLS(t)
		start := time.Now()
		if _, err := io.WriteString(conn, "GET /orders/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaa"); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(make([]byte, 512))
		elapsed := time.Since(start)
		if !isClosedErr(err) {
			t.Fatalf("connection not closed by the server after %v (read %d bytes, err %v)", elapsed, n, err)
		}
		if elapsed < 200*time.Millisecond || elapsed > 3*time.Second {
			t.Errorf("closed after %v, want about the 300ms read_header_timeout", elapsed)
		}
	})
	t.Run("drip one byte every 50ms", func(t *testing.T) {
		t.Parallel()
		conn := g.dialTLS(t)
		start := time.Now()
		line := "GET /orders/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: " + strings.Repeat("d", 200)
		closed := false
		for i := 0; i < len(line) && time.Since(start) < 5*time.Second; i++ {
			if _, err := conn.Write([]byte{line[i]}); err != nil {
				closed = true
				break
			}
			time.Sleep(50 * time.Millisecond)
			if i%4 == 0 { // probe: has the server hung up?
				_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := conn.Read(make([]byte, 1)); isClosedErr(err) {
					closed = true
					break
				}
			}
		}
		elapsed := time.Since(start)
		if !closed {
			t.Fatalf("dripping client still connected after %v", elapsed)
		}
		if elapsed > 3*time.Second {
			t.Errorf("dripping client closed after %v, want about the 300ms read_header_timeout", elapsed)
		}
	})
	if up.count() > 1 {
		t.Errorf("upstream saw %d requests, want at most the benign one", up.count())
	}
}
