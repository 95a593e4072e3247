package gateway

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/authz"
)

var (
	ProbUnauthorized  = Problem{Type: ProblemBase + "unauthorized", Title: "Authentication required", Status: http.StatusUnauthorized}
	ProbBadCredential = Problem{Type: ProblemBase + "invalid-credential", Title: "Invalid credential", Status: http.StatusUnauthorized}
	ProbForbidden     = Problem{Type: ProblemBase + "forbidden", Title: "Not allowed", Status: http.StatusForbidden}
)

// unauthorized answers a refused credential. Whatever the internal reason
// (unknown key, wrong secret, expired, revoked) the client sees the same
// answer, so probing teaches nothing; the reason goes to metrics and logs.
func (g *Gateway) unauthorized(w http.ResponseWriter, c *call, f *authn.Failure) {
	c.denyStage, c.denyReason = "authn", f.Reason
	code := f.Code
	if code == "" {
		code = "invalid_token"
	}
	scheme := f.Scheme
	if scheme == "" {
		scheme = "Bearer"
	}
	w.Header().Set("WWW-Authenticate", scheme+` realm="gatehouse", error="`+code+`"`)
	if code == "invalid_request" && f.Detail != "" {
		WriteProblem(w, Problem{Type: ProblemBase + "invalid-request", Title: "Invalid authentication request", Status: http.StatusBadRequest}, f.Detail, c.requestID)
		return
	}
	WriteProblem(w, ProbBadCredential, "The credential is not valid.", c.requestID)
}

// forbidden answers an authorization denial.
func (g *Gateway) forbidden(w http.ResponseWriter, c *call, op *Operation, p *authn.Principal, d authz.Decision) {
	c.denyStage, c.denyReason = "authz", d.Reason
	if d.Detail != "" {
		g.log.Warn("policy condition failed to evaluate", "request_id", c.requestID, "api", c.api, "operation", c.operation, "detail", d.Detail)
	}
	if d.Status == http.StatusUnauthorized || p == nil {
		c.denyStage = "authn"
		if op.auth.challenge != "" {
			w.Header().Set("WWW-Authenticate", op.auth.challenge)
		}
		WriteProblem(w, ProbUnauthorized, "This operation needs credentials.", c.requestID)
		return
	}
	if d.Reason == authz.ReasonInsufficientScope && d.Scope != "" {
		// RFC 6750 §3.1: tell a well-behaved client which scope to ask for.
		w.Header().Set("WWW-Authenticate", schemeOf(p)+` realm="gatehouse", error="insufficient_scope", scope="`+d.Scope+`"`)
	}
	WriteProblem(w, ProbForbidden, "The caller is not allowed to perform this operation.", c.requestID)
}

func schemeOf(p *authn.Principal) string {
	switch p.Kind {
	case authn.KindAPIKey:
		return "ApiKey"
	case authn.KindMTLS:
		return "Mutual-TLS"
	}
	return "Bearer"
}

// checkCertificate enforces require_mtls and RFC 8705 token binding.
func (a *apiAuth) checkCertificate(r *http.Request, p *authn.Principal) *authn.Failure {
	if a.mtls == nil {
		return authn.Fail("Mutual-TLS", "mtls_not_configured")
	}
	v, err := a.mtls.Verify(r)
	if err != nil {
		if f, ok := err.(*authn.Failure); ok {
			return f
		}
		return authn.Fail("Mutual-TLS", "client_certificate_required")
	}
	if p != nil && p.Partner != "" && p.Partner != v.Partner {
		// A partner's token over another partner's certificate.
		return authn.Fail("Mutual-TLS", "certificate_partner_mismatch")
	}
	// RFC 8705 §3: a certificate-bound token is only good with its
	// certificate, on every API, whether or not the API demands binding.
	if p != nil && (a.boundTokens || certBound(p)) && p.Kind != authn.KindMTLS && p.Kind != authn.KindAPIKey {
		want := boundThumbprint(p)
		sum := sha256.Sum256(v.Leaf.Raw)
		got := base64.RawURLEncoding.EncodeToString(sum[:])
		if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
			return authn.Fail("Bearer", "certificate_binding_mismatch")
		}
	}
	if p != nil && p.Kind == authn.KindMTLS && !bytes.Equal(p.CertSHA256, sha256Of(v.Leaf.Raw)) {
		return authn.Fail("Mutual-TLS", "certificate_changed")
	}
	return nil
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// authzInput builds what a policy condition may read. Only operations whose
// policy has a condition pay for it.
func authzInput(r *http.Request, op *Operation, c *call) *authz.Input {
	in := &authz.Input{Method: r.Method, Operation: op.ID, Query: r.URL.Query(), Header: r.Header, ClientIP: c.clientIP, Time: time.Now()}
	if n := c.params.Len(); n > 0 {
		in.PathParams = make(map[string]string, n)
		for i := 0; i < n; i++ {
			k, v := c.params.At(i)
			if dec, err := url.PathUnescape(v); err == nil {
				v = dec
			}
			in.PathParams[k] = v
		}
	}
	return in
}

// boundThumbprint is a token's cnf.x5t#S256, or "".
func boundThumbprint(p *authn.Principal) string {
	cnf, _ := p.Claims["cnf"].(map[string]any)
	want, _ := cnf["x5t#S256"].(string)
	return want
}

// certBound reports whether p's token is bound to a certificate.
func certBound(p *authn.Principal) bool {
	return p.Kind != authn.KindMTLS && p.Kind != authn.KindAPIKey && boundThumbprint(p) != ""
}

// sentCredential reports whether the request carries a credential in a
// scheme this API accepts.
func (a *apiAuth) sentCredential(r *http.Request) bool { return a.schemeSent(r) != "" }

// schemeSent returns the accepted scheme the request used, or "".
func (a *apiAuth) schemeSent(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	scheme, _, _ := strings.Cut(auth, " ")
	for _, s := range a.schemes {
		if auth != "" && strings.EqualFold(scheme, s) {
			return s
		}
		if s == "ApiKey" && r.Header.Get("X-Api-Key") != "" {
			return s
		}
	}
	return ""
}
