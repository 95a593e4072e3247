package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/h1"
	"github.com/gatehouse/gatehouse/internal/metrics"
)

// transportKey is the part of the config a Transport depends on. Reloads
// that keep it reuse the Transport and its warm connection pool.
type transportKey struct {
	connect, response time.Duration
	idlePerHost       int
}

// NewTransport returns the net/http upstream transport: pooled keep-alive
// connections sized for load, and a timeout on every phase. Gatehouse
// falls back to it for what h1 does not carry (TLS upstreams, upgrades,
// streamed bodies); the benchmark's bare proxy uses it for everything.
func NewTransport(connectTimeout, responseTimeout time.Duration, idlePerHost int) *http.Transport {
	d := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  nil, // never honour HTTP_PROXY for upstream calls
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           4 * idlePerHost,
		MaxIdleConnsPerHost:    idlePerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    connectTimeout,
		ResponseHeaderTimeout:  responseTimeout,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true, // pass encodings through untouched
		MaxResponseHeaderBytes: 1 << 20,
	}
}

// newUpstreamTransport is what the gateway sends upstream requests with:
// h1's synchronous pool for plain-HTTP/1.1 upstreams, NewTransport for
// everything else.
func newUpstreamTransport(connectTimeout, responseTimeout time.Duration, idlePerHost int) *h1.Transport {
	d := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	return &h1.Transport{
		Dial:                   d.DialContext,
		ResponseHeaderTimeout:  responseTimeout,
		IdleConnTimeout:        90 * time.Second,
		MaxIdlePerHost:         idlePerHost,
		MaxResponseHeaderBytes: 1 << 20,
		Fallback:               NewTransport(connectTimeout, responseTimeout, idlePerHost),
	}
}

func (g *Gateway) transportFor(l config.Limits) *h1.Transport {
	k := transportKey{l.UpstreamConnectTimeout.D(), l.UpstreamResponseTimeout.D(), l.UpstreamMaxIdlePerHost}
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.transports[k]; ok {
		return t
	}
	t := newUpstreamTransport(k.connect, k.response, k.idlePerHost)
	g.transports[k] = t
	return t
}

// bufferPool recycles the 32 KiB copy buffers ReverseProxy uses per request.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return v[:]
	}
	return new([copyBufferSize]byte)[:]
}

// Put keeps the array pointer, so recycling a buffer allocates nothing.
func (b *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}

var copyBuffers = &bufferPool{}

func (g *Gateway) newUpstream(rt *Runtime, api config.API, target *url.URL) *upstream {
	up := &upstream{api: api.Name, target: target}
	if !api.Route.KeepBasePath && api.Route.BasePath != "/" {
		up.strip = api.Route.BasePath
	}
	if bp := target.EscapedPath(); bp != "" && bp != "/" {
		up.prefix = strings.TrimSuffix(bp, "/")
	}
	up.proxy = &httputil.ReverseProxy{
		Rewrite:      up.rewrite,
		Transport:    rt.transport,
		BufferPool:   copyBuffers,
		ErrorHandler: g.upstreamError,
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	return up
}

// rewrite builds the upstream request. The pipeline has already put the
// upstream path on the inbound URL and the gateway's own headers (identity,
// request ID, forwarding chain) on the inbound header, which ReverseProxy
// copied; it removed hop-by-hop headers and the X-Forwarded-* trio, which
// come back from the inbound request here.
func (up *upstream) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out
	out.URL.Scheme = up.target.Scheme
	out.URL.Host = up.target.Host
	out.Host = ""
	in, h := pr.In.Header, out.Header
	h["X-Forwarded-For"] = in["X-Forwarded-For"]
	h["X-Forwarded-Proto"] = in["X-Forwarded-Proto"]
	h["X-Forwarded-Host"] = in["X-Forwarded-Host"]
}

// upstreamPath is what the upstream is asked for: exactly the normalised
// path the router matched, less the base path unless the API keeps it,
// under the upstream URL's own path. Gateway and backend cannot disagree
// about what was requested.
func (up *upstream) upstreamPath(path string) string {
	p := path
	if up.strip != "" {
		// The route matched, so the path starts with the base path.
		p = p[len(up.strip):]
		if p == "" {
			p = "/"
		}
	}
	if up.prefix != "" {
		p = up.prefix + p
	}
	return p
}

var (
	protoHTTPS = []string{"https"}
	protoHTTP  = []string{"http"}
)

// prepareUpstream sets the upstream path and the gateway's headers on the
// inbound request, which ReverseProxy then copies.
func prepareUpstream(r *http.Request, up *upstream, c *call) {
	p := up.upstreamPath(c.path)
	// RawPath keeps the path byte for byte: without it, EscapedPath would
	// re-escape sub-delimiters such as ! * ' ( ) and the upstream would see
	// a different path from the one the router matched.
	r.URL.Path, r.URL.RawPath = p, p
	if strings.IndexByte(p, '%') >= 0 {
		if dec, err := url.PathUnescape(p); err == nil {
			r.URL.Path = dec
		}
	}
	v := c.vals[2:]
	h := r.Header
	v[0], v[1] = c.forwardedFor, r.Host
	h["X-Forwarded-For"], h["X-Forwarded-Host"] = v[0:1:1], v[1:2:2]
	if r.TLS != nil {
		h["X-Forwarded-Proto"] = protoHTTPS
	} else {
		h["X-Forwarded-Proto"] = protoHTTP
	}
	// The verified identity, in headers the upstream can trust because the
	// pipeline strips every client-sent X-Gatehouse-* header.
	if p := c.principal; p != nil {
		if p.Kind == "apikey" {
			// The key is the caller's secret for the gateway; the upstream
			// gets the verified identity instead, never the key.
			delete(h, "X-Api-Key")
			if a := h.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "apikey ") {
				delete(h, "Authorization")
			}
		}
		v[2], v[3], v[4] = p.Consumer, p.Kind, strings.Join(p.Scopes, " ")
		h["X-Gatehouse-Consumer"], h["X-Gatehouse-Auth"], h["X-Gatehouse-Scopes"] = v[2:3:3], v[3:4:4], v[4:5:5]
		if p.Partner != "" {
			v[5] = p.Partner
			h["X-Gatehouse-Partner"] = v[5:6:6]
		}
		if p.CredentialID != "" {
			v[6] = p.CredentialID
			h["X-Gatehouse-Credential-Id"] = v[6:7:7]
		}
		if p.Subject != "" {
			v[7] = p.Subject
			h["X-Gatehouse-Subject"] = v[7:8:8]
		}
	}
}

// upstreamError maps transport failures to problems that say what happened
// without revealing where the upstream is; the detail goes to the log only.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	c := &call{}
	if sw, ok := w.(*statusWriter); ok {
		c = sw.call
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		c.denyStage, c.denyReason = "listener", "body_too_large"
		WriteProblem(w, ProbBodyTooLarge, "The request body exceeds the size this API accepts.", c.requestID)
		return
	}
	if errors.Is(r.Context().Err(), context.Canceled) {
		// The client went away; nobody reads this response.
		c.status = 499
		w.WriteHeader(499)
		return
	}
	kind := classifyUpstreamError(err)
	c.upstreamErr = kind
	g.metrics.UpstreamErrors.WithLabelValues(c.api, kind).Inc()
	g.log.Warn("upstream error", "request_id", c.requestID, "api", c.api, "operation", c.operation, "kind", kind, "error", err.Error())
	if kind == "timeout" {
		WriteProblem(w, ProbGatewayTimeout, "The upstream service did not answer in time.", c.requestID)
		return
	}
	WriteProblem(w, ProbBadGateway, "The upstream service could not be reached.", c.requestID)
}

func classifyUpstreamError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return "reset"
	default:
		return "other"
	}
}

// operationSeries aliases the metrics type to keep Operation's fields local.
type operationSeries = *metrics.OperationSeries

func (g *Gateway) seriesFor(api, op string) operationSeries {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := api + "\x00" + op
	if s, ok := g.series[k]; ok {
		return s
	}
	s := g.metrics.ForOperation(api, op)
	g.series[k] = s
	return s
}
