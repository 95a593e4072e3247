// Package authn says who is calling. Each way of authenticating is an
// Authenticator in its own sub-package (apikey, jwt, introspect, mtls); an
// API's Chain tries the ones it accepts. Authentication never decides what a
// caller may do: that is authz's job.
package authn

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"time"
)

// ErrNoCredential is returned by an Authenticator when the request carries
// no credential of its kind ("not mine"), so the next one may try.
var ErrNoCredential = errors.New("authn: no credential of this kind")

// Credential kinds, as recorded in Principal.Kind.
const (
	KindAPIKey     = "apikey"
	KindJWT        = "jwt"
	KindIntrospect = "introspection"
	KindMTLS       = "mtls"
	KindToken      = "token" // issued by Gatehouse's own token endpoint
)

// Principal is the verified identity of a caller.
type Principal struct {
	Kind         string // one of the Kind constants
	Consumer     string // the calling application
	Partner      string // its organisation, or ""
	CredentialID string // API key ID, certificate SPKI hash, … (never a secret)
	Issuer       string // iss for tokens
	Subject      string // sub for tokens
	TokenID      string // jti for tokens, for revocation
	Scopes       []string
	Roles        []string
	Claims       map[string]any // token claims or the consumer's configured claims
	ExpiresAt    time.Time      // credential expiry, zero if none
	// CertSHA256 is the SHA-256 of the verified client certificate (DER),
	// the RFC 8705 x5t#S256 value, when the connection presented one.
	CertSHA256 []byte
}

// HasScope reports whether the principal holds scope s.
func (p *Principal) HasScope(s string) bool {
	for _, x := range p.Scopes {
		if x == s {
			return true
		}
	}
	return false
}

// HasRole reports whether the principal holds role r.
func (p *Principal) HasRole(r string) bool {
	for _, x := range p.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Failure is a refused credential. Reason is for logs and audit only; the
// client gets the same generic answer whatever the reason, so an attacker
// cannot tell an unknown key from a wrong one.
type Failure struct {
	// Reason is a stable machine code, e.g. "bad_checksum", "expired",
	// "unknown_kid", "bad_signature".
	Reason string
	// Scheme is the challenge scheme for WWW-Authenticate ("Bearer", "ApiKey").
	Scheme string
	// Error is the RFC 6750 error code: invalid_request or invalid_token.
	Code string
	// Detail is safe to show the client (no secrets, nothing that helps
	// enumerate credentials); empty for the generic message.
	Detail string
}

func (f *Failure) Error() string { return "authn: " + f.Reason }

// Fail returns an invalid_token Failure with the given scheme and reason.
func Fail(scheme, reason string) *Failure {
	return &Failure{Reason: reason, Scheme: scheme, Code: "invalid_token"}
}

// BadRequest returns an invalid_request Failure whose detail the client sees
// (e.g. "API keys are accepted in headers only").
func BadRequest(scheme, reason, detail string) *Failure {
	return &Failure{Reason: reason, Scheme: scheme, Code: "invalid_request", Detail: detail}
}

// Authenticator verifies one kind of credential.
type Authenticator interface {
	// Scheme is the WWW-Authenticate scheme this authenticator challenges with.
	Scheme() string
	// Authenticate returns the principal, ErrNoCredential when the request
	// has no credential of this kind, a *Failure when it has a bad one, or
	// another error when verification could not be done (an IdP or the
	// store is down): the pipeline then fails closed with 503.
	Authenticate(r *http.Request) (*Principal, error)
}

// TLSInfo gives authenticators the verified client certificate chain of
// the connection, if any.
func TLSInfo(r *http.Request) []*x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates
}

// Chain tries authenticators in order; the first that does not answer
// ErrNoCredential decides.
type Chain []Authenticator

// Authenticate runs the chain. With no credential at all it returns
// ErrNoCredential.
func (c Chain) Authenticate(r *http.Request) (*Principal, error) {
	for _, a := range c {
		p, err := a.Authenticate(r)
		if errors.Is(err, ErrNoCredential) {
			continue
		}
		return p, err
	}
	return nil, ErrNoCredential
}

// Schemes lists the distinct challenge schemes of the chain, for the
// WWW-Authenticate header of a 401.
func (c Chain) Schemes() []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range c {
		if s := a.Scheme(); s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

type principalKey struct{}

// WithPrincipal stores p in ctx.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal stored in ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
