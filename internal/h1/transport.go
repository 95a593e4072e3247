// Package h1 is the upstream transport for plain-HTTP/1.1 upstreams: a
// connection pool whose requests are written and whose responses are read
// on the calling goroutine.
//
// net/http's Transport gives every connection a reader and a writer
// goroutine and hands each request and response between them over
// channels: three or four goroutine wake-ups per request, which on a busy
// gateway cost more CPU than the work the gateway does itself. A gateway's
// upstream calls are simple (one request, one response, bodies of known
// size), so this transport does them synchronously, the way Envoy's and
// fasthttp's pools do, and hands everything else (TLS upstreams, upgrades,
// Expect: 100-continue, streamed or large request bodies) to a fallback
// net/http Transport.
//
// What it keeps from net/http: the request writer (Request.Write) and the
// response parser (ReadResponse) themselves, a bound on response header
// size, retrying an idempotent request once when a pooled connection turns
// out to be closed, and context cancellation at any point. What it adds: a
// pooled connection is checked for a pending close or stray bytes before
// reuse, and a connection with bytes left over after a response is never
// reused (a response-splitting upstream cannot poison the next request).
package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxSyncBody is the largest request body written synchronously. Anything
// larger could fill the socket buffers of an upstream that answers before
// reading the body, so it goes to the fallback, which writes and reads at
// once.
const MaxSyncBody = 64 << 10

// Transport is an http.RoundTripper. Its zero value is not usable; set
// Fallback at least.
type Transport struct {
	// Dial opens a connection; a net.Dialer's DialContext by default.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ResponseHeaderTimeout bounds the time from the start of writing the
	// request to the end of the response header (0: none).
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes pooled connections idle longer (90s if 0).
	IdleConnTimeout time.Duration
	// MaxIdlePerHost bounds the pool per upstream host (2 if 0).
	MaxIdlePerHost int
	// MaxResponseHeaderBytes bounds a response header (1 MiB if 0).
	MaxResponseHeaderBytes int64
	// Fallback carries what this transport does not: https, upgrades,
	// Expect: 100-continue, request bodies of unknown or large size.
	Fallback http.RoundTripper

	mu       sync.Mutex
	idle     map[string][]*conn // per host, most recently used last
	nidle    int
	closed   bool
	sweeping bool // a sweep is scheduled (while anything is pooled)
}

// conn is one upstream connection. Only one request uses it at a time.
type conn struct {
	nc     net.Conn
	raw    syscall.RawConn // for the liveness peek; nil if nc has none
	lr     limitReader
	br     *bufio.Reader
	bw     *bufio.Writer
	w      io.Writer // bw as Request.Write should see it (oneWrite)
	host   string
	idleAt time.Time
	reused bool
}

// limitReader counts what the bufio.Reader pulls while a response header
// is being read, so a header without end cannot grow without bound.
type limitReader struct {
	nc        net.Conn
	remaining int64
	limited   bool
}

var errHeaderTooLarge = errors.New("h1: upstream response header too large")

func (l *limitReader) Read(p []byte) (int, error) {
	if l.limited {
		if l.remaining <= 0 {
			return 0, errHeaderTooLarge
		}
		if int64(len(p)) > l.remaining {
			p = p[:l.remaining]
		}
	}
	n, err := l.nc.Read(p)
	if l.limited {
		l.remaining -= int64(n)
	}
	return n, err
}

// RoundTrip sends req and returns the response; its body must be read to
// EOF or closed (as ReverseProxy does) to release the connection.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		return t.Fallback.RoundTrip(req)
	}
	ctx := req.Context()
	host := canonicalAddr(req)
	for attempt := 0; ; attempt++ {
		c, err := t.getConn(ctx, host)
		if err != nil {
			return nil, err
		}
		resp, gotBytes, err := t.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		c.nc.Close()
		// A pooled connection the upstream closed meanwhile fails before a
		// byte of response arrives; a request that can be sent again safely
		// goes out once more on a fresh connection.
		if attempt == 0 && c.reused && !gotBytes && ctx.Err() == nil && replayable(req) {
			if req.Body != nil && req.Body != http.NoBody {
				b, gerr := req.GetBody()
				if gerr != nil {
					return nil, err
				}
				again := *req
				again.Body = b
				req = &again
			}
			continue
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, err
	}
}

// handles reports whether req takes the synchronous path.
func (t *Transport) handles(req *http.Request) bool {
	if req.URL.Scheme != "http" || req.Header.Get("Upgrade") != "" || len(req.Trailer) > 0 {
		return false
	}
	if v := req.Header["Expect"]; len(v) > 0 {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody {
		// A length of 0 with a body means "unknown" on a client request.
		if req.ContentLength <= 0 || req.ContentLength > MaxSyncBody {
			return false
		}
	}
	return true
}

// replayable is net/http's rule: no body to re-send, and a method (or an
// idempotency key) that says sending twice is harmless.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

// aLongTimeAgo is a deadline in the past: it unblocks any I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes req on c and reads the response header. gotBytes says
// whether any of the response arrived (a retry would then be unsafe).
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request) (_ *http.Response, gotBytes bool, _ error) {
	// Cancelling the context unblocks whatever I/O is in progress; no
	// goroutine waits for it.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(aLongTimeAgo) })
	if t.ResponseHeaderTimeout > 0 {
		_ = c.nc.SetDeadline(time.Now().Add(t.ResponseHeaderTimeout))
	}
	if err := req.Write(c.w); err != nil {
		stop()
		return nil, false, err
	}
	if err := c.bw.Flush(); err != nil {
		stop()
		return nil, false, err
	}
	c.lr.remaining, c.lr.limited = t.maxHeader(), true
	var resp *http.Response
	var err error
	for informational := 0; ; informational++ {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			stop()
			got := c.lr.remaining < t.maxHeader()
			if errors.Is(err, io.EOF) && !got {
				err = errServerClosed
			}
			return nil, got, err
		}
		// 1xx answers other than 101 precede the real one (net/http skips
		// them the same way); a request that asked for no upgrade never
		// gets a 101 through.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if resp.StatusCode == http.StatusSwitchingProtocols || informational >= 5 {
				stop()
				return nil, true, fmt.Errorf("h1: unexpected %d response", resp.StatusCode)
			}
			continue
		}
		break
	}
	c.lr.limited = false
	if t.ResponseHeaderTimeout > 0 {
		_ = c.nc.SetDeadline(time.Time{})
	}
	keep := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		t.release(c, stop, keep)
		return resp, true, nil
	}
	resp.Body = &body{rc: resp.Body, c: c, t: t, stop: stop, keep: keep}
	return resp, true, nil
}

// oneWrite hides the *bufio.Writer from Request.Write, which otherwise
// flushes the header on its own before any body it does not know to be in
// memory: two writes and two packets where one does. A body here is small
// and of known length (MaxSyncBody), so nothing waits on the header alone.
type oneWrite struct{ *bufio.Writer }

var errServerClosed = errors.New("h1: upstream closed the connection before answering")

func (t *Transport) maxHeader() int64 {
	if t.MaxResponseHeaderBytes > 0 {
		return t.MaxResponseHeaderBytes
	}
	return 1 << 20
}

// release ends a request on c: back to the pool when it can serve another
// one, closed otherwise.
func (t *Transport) release(c *conn, stop func() bool, keep bool) {
	// A cancelled context has (or will have) poisoned the deadline.
	if !stop() {
		keep = false
	}
	// Bytes after the response are the upstream's mistake or an attempt
	// at response splitting; either way they must not become the answer
	// to somebody else's request.
	if keep && c.br.Buffered() == 0 {
		t.putConn(c)
		return
	}
	c.nc.Close()
}

// body hands the connection back once the response body is done.
type body struct {
	rc   io.ReadCloser
	c    *conn
	t    *Transport
	stop func() bool
	keep bool
	mu   sync.Mutex
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.done = true
		b.t.release(b.c, b.stop, b.keep)
	} else if err != nil {
		b.done = true
		b.stop()
		b.c.nc.Close()
	}
	return n, err
}

// Close before EOF closes the connection rather than draining a body of
// unknown remaining size.
func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.done = true
		b.stop()
		b.c.nc.Close()
	}
	return nil
}

func (t *Transport) getConn(ctx context.Context, host string) (*conn, error) {
	now := time.Now()
	for {
		c := t.popIdle(host, now)
		if c == nil {
			break
		}
		if alive(c.raw) {
			c.reused = true
			return c, nil
		}
		c.nc.Close()
	}
	dial := t.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	nc, err := dial(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, host: host}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.lr.nc = nc
	c.br = bufio.NewReaderSize(&c.lr, 4<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	c.w = oneWrite{c.bw}
	return c, nil
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleConnTimeout > 0 {
		return t.IdleConnTimeout
	}
	return 90 * time.Second
}

func (t *Transport) maxIdle() int {
	if t.MaxIdlePerHost > 0 {
		return t.MaxIdlePerHost
	}
	return 2
}

// popIdle takes the most recently used connection for host; ones idle too
// long are closed on the way.
func (t *Transport) popIdle(host string, now time.Time) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.idle[host]
	if len(list) == 0 {
		return nil
	}
	for len(list) > 0 {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		t.nidle--
		if now.Sub(c.idleAt) < t.idleTimeout() {
			t.idle[host] = list
			return c
		}
		c.nc.Close()
	}
	t.idle[host] = list
	return nil
}

func (t *Transport) putConn(c *conn) {
	c.idleAt = time.Now()
	t.mu.Lock()
	list := t.idle[c.host]
	if t.closed || len(list) >= t.maxIdle() {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	// The oldest connections sit at the front; ones past the idle timeout
	// go now rather than waiting for a request to find them.
	expired := 0
	for expired < len(list) && c.idleAt.Sub(list[expired].idleAt) >= t.idleTimeout() {
		list[expired].nc.Close()
		expired++
	}
	if expired > 0 {
		list = append(list[:0], list[expired:]...)
		t.nidle -= expired
	}
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	t.idle[c.host] = append(list, c)
	t.nidle++
	if !t.sweeping {
		// Idle connections of a transport nobody uses any more (a reload
		// changed the timeouts) must still close: a timer, armed only
		// while the pool holds something, no goroutine of its own.
		t.sweeping = true
		time.AfterFunc(t.idleTimeout(), t.sweep)
	}
	t.mu.Unlock()
}

// sweep closes the connections idle longer than the idle timeout.
func (t *Transport) sweep() {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for host, list := range t.idle {
		expired := 0
		for expired < len(list) && now.Sub(list[expired].idleAt) >= t.idleTimeout() {
			list[expired].nc.Close()
			expired++
		}
		if expired > 0 {
			t.idle[host] = append(list[:0], list[expired:]...)
			t.nidle -= expired
		}
	}
	if t.nidle > 0 && !t.closed {
		time.AfterFunc(t.idleTimeout(), t.sweep)
		return
	}
	t.sweeping = false
}

// CloseIdleConnections closes every pooled connection, and the fallback's.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.nidle = nil, 0
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.nc.Close()
		}
	}
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// Idle returns the number of pooled connections (for tests and metrics).
func (t *Transport) Idle() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nidle
}

// canonicalAddr is host:port for the request's URL, port 80 by default.
func canonicalAddr(req *http.Request) string {
	if req.URL.Port() != "" {
		return req.URL.Host // already host:port (IPv6 in brackets)
	}
	host, port := req.URL.Hostname(), req.URL.Port()
	if port == "" {
		port = "80"
	}
	if strings.IndexByte(host, ':') >= 0 {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}
