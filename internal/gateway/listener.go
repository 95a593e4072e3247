package gateway

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
)

// cipherSuites are the TLS 1.2 suites offered: forward-secret AEADs only.
// TLS 1.3 suites are not configurable in Go and are all strong.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLSConfig returns the listener's TLS settings. The certificate comes from
// the current Runtime, so a reload can rotate it without a restart.
func (g *Gateway) TLSConfig(minVersion string) *tls.Config {
	c := g.baseTLS(minVersion)
	// When partners use mTLS the current Runtime supplies a config that
	// asks for a client certificate (verified per partner by authn/mtls),
	// with the partner CAs as hints; it follows reloads.
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if rt := g.runtime.Load(); rt != nil && rt.clientCertTLS != nil {
			return rt.clientCertTLS, nil
		}
		return nil, nil
	}
	return c
}

func (g *Gateway) baseTLS(minVersion string) *tls.Config {
	v := uint16(tls.VersionTLS12)
	if minVersion == "1.3" {
		v = tls.VersionTLS13
	}
	return &tls.Config{
		MinVersion:   v,
		CipherSuites: cipherSuites,
		NextProtos:   []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			rt := g.runtime.Load()
			if rt == nil || rt.cert == nil {
				return nil, errors.New("no certificate loaded")
			}
			return rt.cert, nil
		},
	}
}

// NewServer returns an http.Server with the config's limits. The server's
// own MaxHeaderBytes is a hard backstop above the configured limit; the
// pipeline enforces the configured limit itself so the client gets a
// problem+json 431 rather than the server's plain-text one.
func NewServer(h http.Handler, l config.Limits) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout.D(),
		ReadTimeout:       l.ReadTimeout.D(),
		WriteTimeout:      l.WriteTimeout.D(),
		IdleTimeout:       l.IdleTimeout.D(),
		MaxHeaderBytes:    2 * l.MaxHeaderBytes,
		// OPTIONS * goes through the pipeline (and is refused there), not
		// answered by net/http's built-in handler.
		DisableGeneralOptionsHandler: true,
	}
}

// RedirectToHTTPS answers plain-HTTP requests with a permanent redirect to
// the same host on the HTTPS port. It never serves API content.
func RedirectToHTTPS(httpsAddr string) http.Handler {
	_, port, _ := net.SplitHostPort(httpsAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" || strings.ContainsAny(host, "/\\@?# ") {
			WriteProblem(w, ProbBadRequest, "This port only redirects to HTTPS; the Host header is invalid.", "")
			return
		}
		if strings.Contains(host, ":") { // IPv6 literal
			host = "[" + strings.Trim(host, "[]") + "]"
		}
		target := "https://" + host
		if port != "443" {
			target += ":" + port
		}
		uri := r.RequestURI
		if !strings.HasPrefix(uri, "/") {
			uri = "/"
		}
		w.Header().Set("Location", target+uri)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// ShutdownGrace is how long in-flight requests get to finish on shutdown.
const ShutdownGrace = 15 * time.Second
