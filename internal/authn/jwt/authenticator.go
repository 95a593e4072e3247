package jwt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/internal/authn"
)

// Authenticator is the authn.Authenticator for JWT access tokens of one or
// more issuers. Which tokens it claims:
//   - no "Authorization: Bearer" header: authn.ErrNoCredential;
//   - a token in the query string (access_token=): a 400 Failure
//     (token_in_query), whatever else the request carries;
//   - a Bearer value that is not JWT-shaped (three base64url segments):
//     authn.ErrNoCredential, so an opaque token falls through to an
//     introspection authenticator later in the chain;
//   - a JWT-shaped token whose iss is not one of this Authenticator's
//     issuers (or that has no readable iss): authn.ErrNoCredential too,
//     since another JWT authenticator, or introspection, may own it; the
//     chain still ends in 401 when nobody does;
//   - a token of one of its issuers: that issuer's Verifier decides, and
//     only that issuer's keys are ever tried.
type Authenticator struct {
	verifiers []*Verifier
	byIssuer  map[string]*Verifier
}

// NewAuthenticator routes tokens to verifiers by iss. Two verifiers for the
// same iss are an error (which keys would apply would be ambiguous).
func NewAuthenticator(verifiers ...*Verifier) (*Authenticator, error) {
	if len(verifiers) == 0 {
		return nil, errors.New("jwt: NewAuthenticator needs at least one verifier")
	}
	a := &Authenticator{verifiers: verifiers, byIssuer: map[string]*Verifier{}}
	for _, v := range verifiers {
		if prev := a.byIssuer[v.issuer]; prev != nil {
			return nil, fmt.Errorf("jwt: issuers %s and %s both claim iss %q", prev.name, v.name, v.issuer)
		}
		a.byIssuer[v.issuer] = v
	}
	return a, nil
}

// Scheme is the WWW-Authenticate challenge scheme.
func (a *Authenticator) Scheme() string { return Scheme }

// Authenticate implements authn.Authenticator.
func (a *Authenticator) Authenticate(r *http.Request) (*authn.Principal, error) {
	token, err := BearerToken(r)
	if err != nil {
		return nil, err
	}
	if !looksLikeJWT(token) {
		return nil, authn.ErrNoCredential
	}
	// A repeated token is answered from the cache without decoding it.
	sum := tokenSum(token)
	for _, v := range a.verifiers {
		if p := v.cached(sum); p != nil {
			return p, nil
		}
	}
	// Route by the (still unverified) iss of the payload alone, so that a
	// token of ours with a bad header is refused rather than passed on.
	_, rest, _ := strings.Cut(token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	pb, err := b64.DecodeString(payload)
	if err != nil {
		return nil, authn.ErrNoCredential
	}
	claims, f := decodeClaims(pb)
	if f != nil {
		// Whose it is cannot be known, so it is nobody's here.
		return nil, authn.ErrNoCredential
	}
	iss, _ := claims["iss"].(string)
	v := a.byIssuer[iss]
	if v == nil {
		return nil, authn.ErrNoCredential
	}
	j, f := parseCompact(token)
	if f != nil {
		return nil, f
	}
	return v.verify(r.Context(), j, claims, sum)
}

// decodeClaims decodes a JWT payload, which must be a JSON object.
func decodeClaims(payload []byte) (map[string]any, *authn.Failure) {
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil || c == nil {
		return nil, fail(ReasonMalformed)
	}
	return c, nil
}

// BearerToken returns the RFC 6750 §2.1 bearer token of r. It returns
// authn.ErrNoCredential when r has no Bearer Authorization header, and an
// invalid_request Failure when a token travels in the query string (§2.3:
// URLs end up in logs, histories and Referer headers, so such a token is
// refused even alongside a valid header), when the header is empty, or
// when several Authorization headers make the credential ambiguous.
func BearerToken(r *http.Request) (string, error) {
	if strings.Contains(r.URL.RawQuery, "access_token") && r.URL.Query().Has("access_token") {
		return "", authn.BadRequest(Scheme, ReasonTokenInQuery,
			"send the access token in the Authorization header (Bearer), never in the URL")
	}
	values := r.Header.Values("Authorization")
	var token string
	bearers := 0
	for _, h := range values {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
		if strings.EqualFold(scheme, "Bearer") {
			bearers++
			token = strings.TrimSpace(rest)
		}
	}
	switch {
	case bearers == 0:
		return "", authn.ErrNoCredential
	case len(values) > 1:
		return "", authn.BadRequest(Scheme, ReasonMalformed, "send exactly one Authorization header")
	case token == "":
		return "", authn.BadRequest(Scheme, ReasonMalformed, "the Bearer credential is empty")
	case len(token) > maxTokenBytes:
		return "", authn.BadRequest(Scheme, ReasonMalformed, "the Bearer credential is too long")
	}
	return token, nil
}
