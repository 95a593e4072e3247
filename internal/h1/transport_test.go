package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTransport is the transport under test with a real net/http fallback
// that counts what reaches it.
func newTransport() (*Transport, *countingRT) {
	fb := &countingRT{rt: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return &Transport{ResponseHeaderTimeout: 2 * time.Second, MaxIdlePerHost: 4, Fallback: fb}, fb
}

// countingRT passes to a real transport and counts the calls.
type countingRT struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

func (c *countingRT) CloseIdleConnections() {
	if ci, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// countConns starts srv counting the connections it accepts.
func countConns(srv *httptest.Server) *atomic.Int64 {
	var n atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func do(t *testing.T, tr http.RoundTripper, method, url, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(b)
}

func TestReusesOneConnectionSequentially(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	conns := countConns(srv)
	srv.Start()
	defer srv.Close()
	tr, fb := newTransport()
	for i := range 50 {
		resp, body := do(t, tr, "GET", fmt.Sprintf("%s/n/%d", srv.URL, i), "")
		if resp.StatusCode != 200 || body != fmt.Sprintf("hello /n/%d", i) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("50 sequential requests opened %d connections, want 1", n)
	}
	if fb.n.Load() != 0 {
		t.Errorf("fallback used %d times for plain GETs", fb.n.Load())
	}
}

func TestRequestBodiesAndResponseKinds(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %s", r.Method, r.ContentLength, b)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Sum", "3")
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/cached", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) })
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Write([]byte("after hints"))
	})
	srv := httptest.NewUnstartedServer(mux)
	conns := countConns(srv)
	srv.Start()
	defer srv.Close()
	tr, fb := newTransport()

	if _, body := do(t, tr, "POST", srv.URL+"/echo", `{"a":"b"}`); body != `POST 9 {"a":"b"}` {
		t.Errorf("POST echo = %q", body)
	}
	resp, body := do(t, tr, "GET", srv.URL+"/chunked", "")
	if body != "part0;part1;part2;" || resp.Trailer.Get("X-Sum") != "3" {
		t.Errorf("chunked = %q, trailer %q", body, resp.Trailer.Get("X-Sum"))
	}
	if resp, body := do(t, tr, "HEAD", srv.URL+"/echo", ""); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD = %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, tr, "GET", srv.URL+"/empty", ""); resp.StatusCode != 204 {
		t.Errorf("204 route = %d", resp.StatusCode)
	}
	if resp, _ := do(t, tr, "GET", srv.URL+"/cached", ""); resp.StatusCode != 304 {
		t.Errorf("304 route = %d", resp.StatusCode)
	}
	if resp, body := do(t, tr, "GET", srv.URL+"/hints", ""); resp.StatusCode != 200 || body != "after hints" {
		t.Errorf("103 then 200 = %d %q", resp.StatusCode, body)
	}
	if _, body := do(t, tr, "PUT", srv.URL+"/echo", "x"); body != "PUT 1 x" {
		t.Errorf("PUT echo = %q", body)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("seven requests of every kind opened %d connections, want 1 (each left it reusable)", n)
	}
	if fb.n.Load() != 0 {
		t.Errorf("fallback used %d times", fb.n.Load())
	}
}

func TestConnectionCloseIsHonoured(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Write([]byte("bye"))
	}))
	conns := countConns(srv)
	srv.Start()
	defer srv.Close()
	tr, _ := newTransport()
	for range 3 {
		if _, body := do(t, tr, "GET", srv.URL, ""); body != "bye" {
			t.Fatalf("body %q", body)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("Connection: close answered thrice over %d connections, want 3", n)
	}
	if tr.Idle() != 0 {
		t.Errorf("%d closed connections pooled", tr.Idle())
	}
}

// The upstream closes idle connections (Node's default is 5 s); the next
// request, even a POST that must not be retried, goes out on a live one.
func TestUpstreamIdleCloseIsSeenBeforeReuse(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	srv.Config.IdleTimeout = 30 * time.Millisecond
	conns := countConns(srv)
	srv.Start()
	defer srv.Close()
	tr, _ := newTransport()
	for i := range 3 {
		if _, body := do(t, tr, "POST", srv.URL, fmt.Sprintf("p%d", i)); body != fmt.Sprintf("p%d", i) {
			t.Fatalf("POST %d: %q", i, body)
		}
		time.Sleep(150 * time.Millisecond)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 POSTs across idle closes, want 3", n)
	}
}

// rawServer answers each connection with script(connIndex, requestIndex,
// request) written verbatim; an empty answer closes the connection.
type rawServer struct {
	ln    net.Listener
	conns atomic.Int64
	reqs  atomic.Int64
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  []net.Conn
}

func newRawServer(t *testing.T, script func(conn, n int, req *http.Request) string) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			ci := int(s.conns.Add(1)) - 1
			s.mu.Lock()
			s.open = append(s.open, nc)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer nc.Close()
				br := bufio.NewReader(nc)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					s.reqs.Add(1)
					out := script(ci, n, req)
					if out == "" {
						return
					}
					if _, err := io.WriteString(nc, out); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, nc := range s.open {
			nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

const okResp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// A pooled connection that passes the liveness peek but is closed as the
// request arrives: a GET is sent again on a fresh connection, a POST is not
// (the upstream may have acted on it).
func TestRetryOnlyWhatIsSafeToRepeat(t *testing.T) {
	srv := newRawServer(t, func(conn, n int, req *http.Request) string {
		if n == 1 {
			return "" // the second request on any connection: closed unanswered
		}
		return okResp
	})
	tr, _ := newTransport()
	do(t, tr, "GET", srv.url(), "")
	if _, body := do(t, tr, "GET", srv.url(), ""); body != "ok" {
		t.Fatalf("retried GET body %q", body)
	}
	if got := srv.conns.Load(); got != 2 {
		t.Errorf("GET retry used %d connections, want 2", got)
	}
	// The connection from the retry is pooled; a POST on it is refused by
	// the server and must come back as an error, sent exactly once.
	before := srv.reqs.Load()
	req, _ := http.NewRequest("POST", srv.url(), strings.NewReader("pay"))
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("POST on a connection closed unanswered succeeded with %d", resp.StatusCode)
	}
	if sent := srv.reqs.Load() - before; sent != 1 {
		t.Errorf("the POST reached the upstream %d times, want exactly 1", sent)
	}
	// With an idempotency key it may be repeated.
	do(t, tr, "GET", srv.url(), "") // a fresh pooled connection again
	req, _ = http.NewRequest("POST", srv.url(), strings.NewReader("pay"))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("pay")), nil }
	req.Header.Set("Idempotency-Key", "k1")
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("POST with Idempotency-Key not retried: %v", err)
	}
	resp.Body.Close()
}

// Bytes after a complete response (response splitting) never become the
// answer to the next request: the connection is dropped.
func TestTrailingBytesPoisonNothing(t *testing.T) {
	srv := newRawServer(t, func(conn, n int, req *http.Request) string {
		if conn == 0 {
			return okResp + "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
	})
	tr, _ := newTransport()
	if _, body := do(t, tr, "GET", srv.url(), ""); body != "ok" {
		t.Fatalf("first body %q", body)
	}
	if _, body := do(t, tr, "GET", srv.url(), ""); body != "real" {
		t.Errorf("second request answered %q, want the upstream's real answer", body)
	}
}

func TestResponseHeaderBounded(t *testing.T) {
	srv := newRawServer(t, func(conn, n int, req *http.Request) string {
		return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
	})
	tr, _ := newTransport()
	tr.MaxResponseHeaderBytes = 8 << 10
	req, _ := http.NewRequest("GET", srv.url(), nil)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, errHeaderTooLarge) {
		t.Fatalf("64 KiB header with an 8 KiB limit: err %v, want errHeaderTooLarge", err)
	}
}

func TestUpgradeSwitchingProtocolsRefused(t *testing.T) {
	srv := newRawServer(t, func(conn, n int, req *http.Request) string {
		return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: Upgrade\r\n\r\n"
	})
	tr, _ := newTransport()
	req, _ := http.NewRequest("GET", srv.url(), nil)
	if resp, err := tr.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatalf("an unrequested 101 came through as %d", resp.StatusCode)
	}
}

func TestTimeoutsAndCancellation(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/midbody" {
			w.Write([]byte("first half"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	tr, _ := newTransport()
	tr.ResponseHeaderTimeout = 100 * time.Millisecond
	start := time.Now()
	req, _ := http.NewRequest("GET", srv.URL+"/silent", nil)
	_, err := tr.RoundTrip(req)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("silent upstream: err %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("header timeout of 100ms took %s", d)
	}

	// Headers in time, then the client goes away mid-body.
	tr.ResponseHeaderTimeout = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", srv.URL+"/midbody", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("a cancelled body read ended without error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %s to unblock the body read", d)
	}
	resp.Body.Close()
	if tr.Idle() != 0 {
		t.Errorf("a connection whose body was cancelled was pooled")
	}

	// Cancelled before anything was written.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", srv.URL+"/silent", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: err %v, want context.Canceled", err)
	}
}

func TestWhatGoesToTheFallback(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("tls")) }))
	defer tlsSrv.Close()
	tr, fb := newTransport()
	cases := []struct {
		name, method, url, body string
		hdr                     []string
		viaFallback             bool
	}{
		{"plain GET", "GET", plain.URL, "", nil, false},
		{"small body", "POST", plain.URL, strings.Repeat("x", 1000), nil, false},
		{"https upstream", "GET", tlsSrv.URL, "", nil, true},
		{"body over MaxSyncBody", "POST", plain.URL, strings.Repeat("x", MaxSyncBody+1), nil, true},
		{"Expect: 100-continue", "POST", plain.URL, "abc", []string{"Expect", "100-continue"}, true},
		{"upgrade", "GET", plain.URL, "", []string{"Upgrade", "websocket", "Connection", "Upgrade"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := fb.n.Load()
			resp, body := do(t, tr, tc.method, tc.url, tc.body, tc.hdr...)
			if resp.StatusCode >= 500 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if tc.body != "" && body != fmt.Sprint(len(tc.body)) {
				t.Errorf("upstream read %s body bytes, want %d", body, len(tc.body))
			}
			if got := fb.n.Load() > before; got != tc.viaFallback {
				t.Errorf("via fallback = %v, want %v", got, tc.viaFallback)
			}
		})
	}
	// A streamed body of unknown length also goes to the fallback.
	before := fb.n.Load()
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte("stream")); pw.Close() }()
	req, _ := http.NewRequest("POST", plain.URL, pr)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "6" || fb.n.Load() != before+1 {
		t.Errorf("streamed body: upstream read %s bytes, fallback calls %d", b, fb.n.Load()-before)
	}
}

func TestConcurrentUseStaysBounded(t *testing.T) {
	var inflight, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	defer srv.Close()
	tr, _ := newTransport()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				want := fmt.Sprintf("g%d-%d", g, i)
				req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(want))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != want {
					errs <- fmt.Errorf("got %q (%v), want %q: responses crossed", b, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := tr.Idle(); n > tr.MaxIdlePerHost {
		t.Errorf("%d idle connections pooled, bound is %d", n, tr.MaxIdlePerHost)
	}
	tr.CloseIdleConnections()
	if n := tr.Idle(); n != 0 {
		t.Errorf("%d idle after CloseIdleConnections", n)
	}
}

// Idle connections close after IdleConnTimeout even if the transport is
// never used again (the reload case), without a request to find them.
func TestIdleConnectionsExpireUnattended(t *testing.T) {
	var closed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr, _ := newTransport()
	tr.IdleConnTimeout = 50 * time.Millisecond
	do(t, tr, "GET", srv.URL, "")
	if tr.Idle() != 1 {
		t.Fatalf("%d pooled after one request, want 1", tr.Idle())
	}
	deadline := time.Now().Add(3 * time.Second)
	for tr.Idle() != 0 || closed.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after 3s: %d still pooled, %d closed at the server", tr.Idle(), closed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And the pool works again afterwards.
	if _, body := do(t, tr, "GET", srv.URL, ""); body != "x" {
		t.Fatalf("body %q", body)
	}
}

// FuzzUpstreamResponse feeds arbitrary bytes as an upstream's answer: the
// transport returns an error or a response whose body ends, never panics
// or hangs, and never pools a connection with bytes left on it.
func FuzzUpstreamResponse(f *testing.F) {
	for _, s := range []string{
		okResp,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nffffffffffffffff\r\n",
		okResp + "HTTP/1.1 200 OK\r\n\r\n",
		"garbage",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, answer string) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			br := bufio.NewReader(server)
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			server.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(server, answer)
		}()
		used := false
		tr := &Transport{
			ResponseHeaderTimeout:  time.Second,
			MaxResponseHeaderBytes: 4 << 10,
			Fallback:               http.DefaultTransport,
			Dial: func(context.Context, string, string) (net.Conn, error) {
				if used {
					return nil, errors.New("one connection only")
				}
				used = true
				return client, nil
			},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://upstream.test/x", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if ctx.Err() != nil {
			t.Fatalf("reading the answer %q hung until the deadline", answer)
		}
		for _, list := range tr.idle {
			for _, c := range list {
				if c.br.Buffered() != 0 {
					t.Fatalf("pooled a connection with %d bytes left over", c.br.Buffered())
				}
			}
		}
	})
}
