package jwt

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync/atomic"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse/gatehouse/internal/authn"
)

// Stable failure reasons (authn.Failure.Reason), for logs, audit and alerts.
const (
	ReasonMalformed       = "malformed"
	ReasonBadSignature    = "bad_signature"
	ReasonAlgNotAllowed   = "alg_not_allowed"
	ReasonEmbeddedKey     = "embedded_key"
	ReasonCritUnsupported = "crit_unsupported"
	ReasonUnknownKID      = "unknown_kid"
	ReasonBadIssuer       = "bad_issuer"
	ReasonBadAudience     = "bad_audience"
	ReasonExpired         = "expired"
	ReasonNotYetValid     = "not_yet_valid"
	ReasonLifetime        = "lifetime_exceeded"
	ReasonMissingClaim    = "missing_claim"
	ReasonTokenInQuery    = "token_in_query"
)

// Scheme is the WWW-Authenticate challenge scheme of bearer tokens.
const Scheme = "Bearer"

// maxTokenBytes bounds a Bearer value before anything is decoded: an access
// token with a generous claims set fits; anything larger is abuse.
const maxTokenBytes = 16 << 10

// maxKIDBytes bounds the kid header: it is only ever a map key, but nothing
// legitimate needs more and it ends up in logs.
const maxKIDBytes = 256

// methods maps the JWA names Gatehouse can verify to golang-jwt's
// implementations. Only asymmetric algorithms exist here: "none" and the
// HMAC family can never be looked up, whatever an allow-list says, which
// closes the key-confusion attack (HS256 "signed" with the RSA public key)
// at the root.
var methods = map[string]gojwt.SigningMethod{
	"RS256": gojwt.SigningMethodRS256,
	"RS384": gojwt.SigningMethodRS384,
	"RS512": gojwt.SigningMethodRS512,
	"PS256": strictPSS(gojwt.SigningMethodPS256),
	"PS384": strictPSS(gojwt.SigningMethodPS384),
	"PS512": strictPSS(gojwt.SigningMethodPS512),
	"ES256": gojwt.SigningMethodES256,
	"ES384": gojwt.SigningMethodES384,
	"ES512": gojwt.SigningMethodES512,
	"EdDSA": gojwt.SigningMethodEdDSA,
}

// strictPSS returns m verifying with the salt length RFC 7518 §3.5 fixes
// (equal to the hash size). golang-jwt's stock PS* methods verify with
// PSSSaltLengthAuto for compatibility with old signers, which accepts the
// Wycheproof "SaltLenChanged" signatures.
func strictPSS(m *gojwt.SigningMethodRSAPSS) *gojwt.SigningMethodRSAPSS {
	return &gojwt.SigningMethodRSAPSS{
		SigningMethodRSA: m.SigningMethodRSA,
		Options:          &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash},
		VerifyOptions:    &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash},
	}
}

// keyHeaders are the JOSE headers that carry or point at a key. A token that
// names its own verification key proves nothing, and fetching a jku/x5u URL
// would let any caller make the gateway issue requests (SSRF). Gatehouse
// refuses tokens that carry any of them at all, rather than just ignoring
// them: a real IdP never sends them to a resource server that pins the
// issuer's JWKS, so their presence is an attack signal worth a reason code.
var keyHeaders = []string{"jwk", "jku", "x5u", "x5c"}

// supportedCrit lists the crit extensions Gatehouse understands: none. Any
// crit entry is therefore refused (RFC 7515 §4.1.11: a recipient that does
// not understand a critical extension must reject the JWS).
var supportedCrit = map[string]bool{}

// refusedTypes are explicit JWT types (RFC 8725 §3.11) of tokens that are
// not access tokens; accepting them would let e.g. a DPoP proof or a logout
// token signed by the same IdP stand in for an access token.
var refusedTypes = map[string]bool{
	"dpop+jwt":                 true,
	"logout+jwt":               true,
	"secevent+jwt":             true,
	"application/dpop+jwt":     true,
	"application/logout+jwt":   true,
	"application/secevent+jwt": true,
}

// sigVerifications counts signature verifications, so tests can prove that
// a cache hit skips them.
var sigVerifications atomic.Int64

// compactJWS is a JWS in compact serialisation, segments decoded.
type compactJWS struct {
	signingInput string // base64url(header) "." base64url(payload)
	header       map[string]any
	payload      []byte
	sig          []byte
	alg, kid     string
}

var b64 = base64.RawURLEncoding.Strict()

// looksLikeJWT reports whether s has the shape of a compact JWS: three
// non-empty-header segments of base64url characters. Anything else (an
// opaque token, a JWE) is not for the JWT verifiers and falls through to
// the next authenticator, e.g. introspection.
func looksLikeJWT(s string) bool {
	if len(s) > maxTokenBytes {
		return false
	}
	dots := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2 && s[0] != '.'
}

// parseCompact decodes the three segments. It checks shape and encoding
// only; what the header says is judged by checkHeader.
func parseCompact(token string) (*compactJWS, *authn.Failure) {
	if len(token) > maxTokenBytes {
		return nil, fail(ReasonMalformed)
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || strings.Contains(s, ".") {
		return nil, fail(ReasonMalformed)
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return nil, fail(ReasonMalformed)
	}
	pb, err := b64.DecodeString(p)
	if err != nil {
		return nil, fail(ReasonMalformed)
	}
	sb, err := b64.DecodeString(s)
	if err != nil {
		return nil, fail(ReasonMalformed)
	}
	var header map[string]any
	if err := json.Unmarshal(hb, &header); err != nil || header == nil {
		return nil, fail(ReasonMalformed)
	}
	j := &compactJWS{signingInput: token[:len(h)+1+len(p)], header: header, payload: pb, sig: sb}
	alg, ok := header["alg"].(string)
	if !ok || alg == "" {
		return nil, fail(ReasonMalformed)
	}
	j.alg = alg
	if v, present := header["kid"]; present {
		kid, ok := v.(string)
		if !ok || len(kid) > maxKIDBytes {
			return nil, fail(ReasonMalformed)
		}
		j.kid = kid
	}
	return j, nil
}

// checkHeader applies the header rules that hold whatever the key: no
// embedded keys, no unknown crit, an allowed asymmetric algorithm.
func checkHeader(j *compactJWS, allowed map[string]bool) *authn.Failure {
	for _, k := range keyHeaders {
		if _, ok := j.header[k]; ok {
			return fail(ReasonEmbeddedKey)
		}
	}
	if c, ok := j.header["crit"]; ok {
		if f := checkCrit(c, j.header); f != nil {
			return f
		}
	}
	// RFC 7797 unencoded payloads change what is signed; only the default
	// (b64 absent or true) is understood.
	if v, ok := j.header["b64"]; ok && v != true {
		return fail(ReasonCritUnsupported)
	}
	if t, ok := j.header["typ"]; ok {
		ts, isStr := t.(string)
		if !isStr || refusedTypes[strings.ToLower(ts)] {
			return fail(ReasonMalformed)
		}
	}
	// "none" in any spelling, and every HMAC algorithm, are refused before
	// the allow-list is even consulted: no configuration can enable them.
	upper := strings.ToUpper(j.alg)
	if upper == "NONE" || strings.HasPrefix(upper, "HS") {
		return fail(ReasonAlgNotAllowed)
	}
	if !allowed[j.alg] || methods[j.alg] == nil {
		return fail(ReasonAlgNotAllowed)
	}
	return nil
}

// checkCrit enforces RFC 7515 §4.1.11: crit is a non-empty array of
// strings, each naming a header present in the JWS, and each one an
// extension the recipient understands. Gatehouse understands none.
func checkCrit(c any, header map[string]any) *authn.Failure {
	list, ok := c.([]any)
	if !ok || len(list) == 0 {
		return fail(ReasonCritUnsupported)
	}
	for _, e := range list {
		name, ok := e.(string)
		if !ok {
			return fail(ReasonCritUnsupported)
		}
		if _, present := header[name]; !present {
			return fail(ReasonCritUnsupported)
		}
		if !supportedCrit[name] {
			return fail(ReasonCritUnsupported)
		}
	}
	return nil
}

// verifySignature checks the signature of j with the issuer's keys: the
// candidates are the keys with the token's kid (every key when it names
// none) that are fit for the token's algorithm; the first that verifies
// wins. It returns the key that verified.
func verifySignature(j *compactJWS, candidates []*verificationKey) (*verificationKey, *authn.Failure) {
	m := methods[j.alg]
	if m == nil {
		return nil, fail(ReasonAlgNotAllowed)
	}
	if len(j.sig) == 0 {
		return nil, fail(ReasonBadSignature)
	}
	for _, k := range candidates {
		sigVerifications.Add(1)
		if err := m.Verify(j.signingInput, j.sig, k.pub); err == nil {
			return k, nil
		}
	}
	return nil, fail(ReasonBadSignature)
}

// verifyJWS runs every signature-level check of a compact JWS against a key
// set: shape, header rules, key selection and the signature itself. It does
// not look at the payload, so it serves the Wycheproof vectors (whose
// payloads are not claims sets) as well as Verifier.
func verifyJWS(token string, ks *keySet, allowed map[string]bool) (*compactJWS, *verificationKey, *authn.Failure) {
	j, f := parseCompact(token)
	if f != nil {
		return nil, nil, f
	}
	if f := checkHeader(j, allowed); f != nil {
		return nil, nil, f
	}
	cands, f := ks.candidates(j.kid, j.alg)
	if f != nil {
		return nil, nil, f
	}
	k, f := verifySignature(j, cands)
	if f != nil {
		return nil, nil, f
	}
	return j, k, nil
}

func fail(reason string) *authn.Failure { return authn.Fail(Scheme, reason) }
