// Package redact is the one engine that keeps secrets and personal data out
// of Gatehouse's logs, audit records and error messages.
//
// Some things are always redacted, whatever the config says: credential
// headers (Authorization, Cookie, API-key headers…), query parameters and
// JSON fields whose names look like secrets, and anything shaped like a JWT,
// an HTTP auth credential or a Gatehouse API key wherever it appears in free
// text. Detectors for personal data (emails, payment card numbers, IBANs, US
// SSNs), extra JSON field paths and extra header names are configured.
//
// A redacted value becomes [REDACTED:<kind>:<6 hex>], where the hex is a
// keyed hash (HMAC-SHA-256 under a per-installation key) of the value: two
// log lines about the same secret correlate, but the suffix cannot be
// brute-forced offline even for low-entropy values such as card numbers.
package redact

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Detector names accepted in Options.Detectors.
const (
	DetectEmail = "email"
	DetectPAN   = "pan"
	DetectIBAN  = "iban"
	DetectSSN   = "ssn"
)

// Detectors lists every optional detector name.
var Detectors = []string{DetectEmail, DetectPAN, DetectIBAN, DetectSSN}

// Options configure a Redactor. The zero value redacts only what is always
// redacted, with a random per-process hash key.
type Options struct {
	// Key keys the hash suffix. Use a stable per-installation secret so
	// suffixes correlate across restarts; nil draws a random one.
	Key []byte
	// Fields are JSON field paths to redact: a bare name ("ssn") matches
	// the field at any depth; a dotted path ("customer.address.street")
	// matches from the document root, "*" matching any one field name.
	// Array indices are not part of paths: "items.card" matches the card
	// of every element of items.
	Fields []string
	// Headers are extra header names (case-insensitive) whose values are
	// always redacted.
	Headers []string
	// Detectors enables optional detectors by name (see Detectors).
	Detectors []string
}

// Redactor redacts values. It is immutable and safe for concurrent use.
type Redactor struct {
	key       []byte
	fields    [][]string // split dotted paths
	names     map[string]bool
	headers   map[string]bool
	email     bool
	pan       bool
	iban      bool
	ssn       bool
	anyDigits bool // pan || iban || ssn: digit runs need a look
}

// New builds a Redactor, rejecting unknown detector names and empty paths.
func New(o Options) (*Redactor, error) {
	r := &Redactor{key: o.Key, names: map[string]bool{}, headers: map[string]bool{}}
	if len(r.key) == 0 {
		r.key = make([]byte, 32)
		if _, err := rand.Read(r.key); err != nil {
			return nil, fmt.Errorf("redact: draw hash key: %w", err)
		}
	}
	for _, f := range o.Fields {
		parts := strings.Split(f, ".")
		if slices.Contains(parts, "") {
			return nil, fmt.Errorf("redact: field path %q: empty segment", f)
		}
		if len(parts) == 1 {
			r.names[strings.ToLower(f)] = true
			continue
		}
		r.fields = append(r.fields, parts)
	}
	for _, h := range o.Headers {
		if h == "" {
			return nil, fmt.Errorf("redact: empty header name")
		}
		r.headers[strings.ToLower(h)] = true
	}
	for _, d := range o.Detectors {
		switch d {
		case DetectEmail:
			r.email = true
		case DetectPAN:
			r.pan = true
		case DetectIBAN:
			r.iban = true
		case DetectSSN:
			r.ssn = true
		default:
			return nil, fmt.Errorf("redact: unknown detector %q (want one of %s)", d, strings.Join(Detectors, ", "))
		}
	}
	r.anyDigits = r.pan || r.iban || r.ssn
	return r, nil
}

// Default returns a Redactor with only the always-on rules and a random key.
func Default() *Redactor {
	r, err := New(Options{})
	if err != nil {
		panic(err) // only a broken crypto/rand gets here
	}
	return r
}

// Mark is the replacement for value: [REDACTED:kind:hhhhhh].
func (r *Redactor) Mark(kind, value string) string {
	m := hmac.New(sha256.New, r.key)
	m.Write([]byte(value))
	var sum [sha256.Size]byte
	var hx [6]byte
	hex.Encode(hx[:], m.Sum(sum[:0])[:3])
	return "[REDACTED:" + kind + ":" + string(hx[:]) + "]"
}

// secretNames are parameter and field names (lower case, with '-' and '_'
// removed) that always hold secrets.
var secretNames = map[string]bool{
	"token": true, "accesstoken": true, "refreshtoken": true, "idtoken": true, "authtoken": true,
	"key": true, "apikey": true, "accesskey": true, "secretkey": true, "privatekey": true,
	"secret": true, "clientsecret": true, "password": true, "passwd": true, "pwd": true,
	"passphrase": true, "signature": true, "sig": true, "code": true, "session": true,
	"sessionid": true, "sessiontoken": true, "authorization": true, "auth": true, "jwt": true,
	"bearer": true, "credential": true, "credentials": true, "otp": true, "pin": true,
	"xamzsignature": true, "xamzsecuritytoken": true, "xamzcredential": true, "assertion": true,
	"clientassertion": true, "cookie": true, "setcookie": true, "csrftoken": true, "xsrftoken": true,
}

// secretSuffixes catch compound names (github_token, db_password, hmacKey).
var secretSuffixes = []string{"token", "secret", "password", "passwd", "apikey", "signature", "privatekey", "sessionid"}

// IsSecretName reports whether a query parameter, JSON field or log
// attribute name looks like it holds a secret.
func IsSecretName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	var buf [64]byte
	n := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-' || c == '_' || c == '.':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	s := string(buf[:n]) // the compiler does not allocate for map lookups
	if secretNames[s] {
		return true
	}
	for _, suf := range secretSuffixes {
		if strings.HasSuffix(s, suf) {
			return true
		}
	}
	return false
}

// secretHeaders are always redacted (lower case).
var secretHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
	"x-api-key": true, "api-key": true, "apikey": true, "x-apikey": true, "x-auth-token": true,
	"x-access-token": true, "x-amz-security-token": true, "x-csrf-token": true, "x-xsrf-token": true,
	"x-gatehouse-key": true, "proxy-authorization-info": true, "x-hub-signature": true,
	"x-hub-signature-256": true,
}

// IsSecretHeader reports whether header name (any case) always or by
// config holds a secret.
func (r *Redactor) IsSecretHeader(name string) bool {
	l := strings.ToLower(name)
	if secretHeaders[l] || r.headers[l] {
		return true
	}
	// X-Foo-Token, X-Client-Secret, X-Service-Api-Key…
	return strings.HasSuffix(l, "-token") || strings.HasSuffix(l, "-secret") ||
		strings.HasSuffix(l, "-api-key") || strings.HasSuffix(l, "-apikey") ||
		strings.HasSuffix(l, "-password") || strings.HasSuffix(l, "-signature")
}

// isFieldName reports whether JSON field name alone is redacted.
func (r *Redactor) isFieldName(name string) bool {
	return IsSecretName(name) || r.names[strings.ToLower(name)]
}

// matchPath reports whether the path of field names (array levels left
// out) matches a configured dotted path.
func (r *Redactor) matchPath(path []string) bool {
	for _, p := range r.fields {
		if len(p) != len(path) {
			continue
		}
		ok := true
		for i := range p {
			if p[i] != "*" && !strings.EqualFold(p[i], path[i]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
