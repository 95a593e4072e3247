package redact

import (
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/internal/authn/apikey"
)

// Kinds named in redaction marks.
const (
	KindJWT    = "jwt"
	KindAPIKey = "apikey"
	KindAuth   = "auth"   // an HTTP Authorization credential in text
	KindSecret = "secret" // the value of a secret-named parameter or field
	KindHeader = "header"
	KindEmail  = "email"
	KindPAN    = "pan"
	KindIBAN   = "iban"
	KindSSN    = "ssn"
)

// span is one finding in a text: s[start:end] is redacted as kind.
type span struct {
	start, end int
	kind       string
}

// maxTextScan bounds the work one Text call does: longer texts are cut and
// the tail replaced, since a multi-megabyte log attribute is itself a bug
// and scanning it would let one request cost the logger seconds.
const maxTextScan = 64 << 10

// Text redacts secrets and enabled personal data wherever they appear in s.
// When nothing is found it returns s itself without allocating.
func (r *Redactor) Text(s string) string {
	if len(s) > maxTextScan {
		return r.Text(s[:maxTextScan]) + r.Mark("truncated", s[maxTextScan:])
	}
	if strings.IndexByte(s, '%') >= 0 {
		// Percent-encoded secrets ("a%40b.example", "Bearer%20ey…") are
		// looked for decoded, and the decoded text is what gets redacted.
		if dec, err := url.PathUnescape(s); err == nil && dec != s {
			if spans := r.find(dec, nil); len(spans) > 0 {
				return r.apply(dec, spans)
			}
		}
	}
	spans := r.find(s, nil)
	if len(spans) == 0 {
		return s
	}
	return r.apply(s, spans)
}

// Contains reports whether Text would change s.
func (r *Redactor) Contains(s string) bool {
	return r.Text(s) != s
}

// apply replaces spans (sorted by start, not overlapping) by marks.
func (r *Redactor) apply(s string, spans []span) string {
	var b strings.Builder
	b.Grow(len(s) + 16*len(spans))
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.start])
		b.WriteString(r.Mark(sp.kind, s[sp.start:sp.end]))
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// find collects every finding in s, in order, without overlaps. Each
// detector first looks for a cheap anchor (a fixed substring or byte), so
// the common case (a log message with no secret) costs a few IndexByte
// scans and no regular expression at all.
func (r *Redactor) find(s string, spans []span) []span {
	add := func(sp span) { spans = append(spans, sp) }
	// JWT: base64url of a JSON header starts "eyJ" ('{"').
	for off := 0; ; {
		i := strings.Index(s[off:], "eyJ")
		if i < 0 {
			break
		}
		i += off
		if end := jwtEnd(s, i); end > 0 && boundaryBefore(s, i) {
			add(span{i, end, KindJWT})
			off = end
			continue
		}
		off = i + 3
	}
	// Gatehouse API keys, whole or truncated (see apikey.LooksLikeKey).
	for off := 0; ; {
		i := strings.Index(s[off:], apikey.Prefix)
		if i < 0 {
			break
		}
		i += off
		if end := apiKeyEnd(s, i); end > 0 {
			add(span{i, end, KindAPIKey})
			off = end
			continue
		}
		off = i + len(apikey.Prefix)
	}
	// "Bearer xxx", "Basic xxx" and friends, wherever a header got
	// formatted into a message. One pass finds candidate first letters.
	for i := 0; i < len(s); i++ {
		if !schemeStart[s[i]] || !boundaryBefore(s, i) {
			continue
		}
		for _, scheme := range authSchemes {
			j := i + len(scheme)
			if j >= len(s) || !strings.EqualFold(s[i:j], scheme) || (s[j] != ' ' && s[j] != '\t') {
				continue
			}
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
				k++
			}
			end := k
			for end < len(s) && isToken68(s[end]) {
				end++
			}
			if end-k >= 8 && credentialShaped(s[k:end]) {
				add(span{k, end, KindAuth})
				i = end - 1
			}
			break
		}
	}
	// name=value with a secret name (query strings, form bodies, DSNs).
	if strings.IndexByte(s, '=') >= 0 {
		r.findAssignments(s, add)
	}
	// "name": "value" with a secret name (JSON formatted into text).
	if strings.Contains(s, "\":") {
		r.findJSONPairs(s, add)
	}
	if r.email && strings.IndexByte(s, '@') >= 0 {
		findEmails(s, add)
	}
	if r.anyDigits {
		r.findNumbers(s, add)
	}
	return mergeSpans(spans)
}

// mergeSpans sorts spans and joins overlapping ones (a later detector's
// finding inside an earlier one's widens it), so apply sees disjoint spans.
func mergeSpans(spans []span) []span {
	if len(spans) < 2 {
		return spans
	}
	sortSpans(spans)
	out := spans[:1]
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if sp.start < last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		out = append(out, sp)
	}
	return out
}

var authSchemes = []string{"bearer", "basic", "digest", "negotiate", "token"}

// schemeStart marks the first letters of authSchemes, both cases.
var schemeStart = func() (t [256]bool) {
	for _, s := range authSchemes {
		t[s[0]] = true
		t[s[0]-('a'-'A')] = true
	}
	return t
}()

func sortSpans(spans []span) {
	// Insertion sort: there are almost always zero or one spans.
	for i := 1; i < len(spans); i++ {
		for j := i; j > 0 && spans[j].start < spans[j-1].start; j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
}

// credentialShaped tells a credential after an auth scheme word from
// prose ("basic authentication failed"): it has a digit, a symbol of
// token68, or an upper-case letter past its first character.
func credentialShaped(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if isDigit(c) || (i > 0 && isUpper(c)) || !isAlnum(c) {
			return true
		}
	}
	return false
}

func isB64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func isToken68(c byte) bool {
	return isB64URL(c) || c == '.' || c == '~' || c == '+' || c == '/' || c == '='
}

func isAlnum(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

// boundaryBefore reports whether s[i] starts a word: a JWT glued to a
// longer base64 run is a blob that happens to contain "eyJ", not a token.
func boundaryBefore(s string, i int) bool {
	return i == 0 || !isB64URL(s[i-1])
}

// jwtEnd returns the end of a JWT (JWS compact, or JWE's five parts)
// starting at s[i], or 0. The header segment must decode to something
// beginning '{"', which "eyJ" already guarantees; a minimum length keeps
// "eyJ.a.b" fragments out.
func jwtEnd(s string, i int) int {
	j := i
	dots := 0
	segStart := j
	for j < len(s) {
		c := s[j]
		if isB64URL(c) {
			j++
			continue
		}
		if c == '.' && dots < 4 {
			if dots < 2 && j == segStart { // header and payload are never empty
				return 0
			}
			dots++
			j++
			segStart = j
			continue
		}
		break
	}
	if dots < 2 || j-i < 20 || j-i-dots < 16 {
		return 0
	}
	// A compact JWS may carry a non-JSON payload (rare but legal): three
	// base64url runs after a JSON header are a token either way.
	return j
}

// apiKeyEnd returns the end of a Gatehouse API key starting at s[i], or 0.
// A whole key with a valid checksum ends at its length; a prefix + ID +
// "_" followed by base62 is a truncated or mistyped key, still a leak.
func apiKeyEnd(s string, i int) int {
	if !boundaryBefore(s, i) {
		return 0
	}
	rest := s[i:]
	if len(rest) >= apikey.KeyLen {
		if _, err := apikey.Parse(rest[:apikey.KeyLen]); err == nil {
			return i + apikey.KeyLen
		}
	}
	p := len(apikey.Prefix)
	if len(rest) <= p+apikey.IDLen+1 || !apikey.ValidID(rest[p:p+apikey.IDLen]) || rest[p+apikey.IDLen] != '_' {
		return 0
	}
	j := p + apikey.IDLen + 1
	for j < len(rest) && isAlnum(rest[j]) {
		j++
	}
	if j == p+apikey.IDLen+1 {
		return 0
	}
	return i + j
}

// findAssignments finds name=value pairs whose name is secret-like. The
// name runs back from '=' over [A-Za-z0-9_.-]; the value runs to the next
// separator of query strings, headers and log formats.
func (r *Redactor) findAssignments(s string, add func(span)) {
	for off := 0; ; {
		i := strings.IndexByte(s[off:], '=')
		if i < 0 {
			break
		}
		i += off
		off = i + 1
		n := i
		for n > 0 && (isAlnum(s[n-1]) || s[n-1] == '_' || s[n-1] == '-' || s[n-1] == '.') {
			n--
		}
		if n == i || !r.isFieldName(s[n:i]) {
			continue
		}
		v := i + 1
		quoted := v < len(s) && s[v] == '"'
		if quoted {
			v++
		}
		end := v
		for end < len(s) {
			c := s[end]
			if quoted {
				if c == '"' {
					break
				}
			} else if c == '&' || c == ' ' || c == ';' || c == ',' || c == '"' || c == '\'' || c == '\n' || c == '\r' || c == '\t' || c == '#' {
				break
			}
			end++
		}
		if end > v {
			add(span{v, end, KindSecret})
			off = end
		}
	}
}

// findJSONPairs finds "name": "value" (or a bare scalar) with a
// secret-like name in text that embeds JSON.
func (r *Redactor) findJSONPairs(s string, add func(span)) {
	for off := 0; ; {
		i := strings.Index(s[off:], "\":")
		if i < 0 {
			return
		}
		i += off
		off = i + 2
		n := strings.LastIndexByte(s[:i], '"')
		if n < 0 || !r.isFieldName(s[n+1:i]) {
			continue
		}
		v := i + 2
		for v < len(s) && s[v] == ' ' {
			v++
		}
		if v >= len(s) {
			return
		}
		end := v
		if s[v] == '"' {
			v++
			end = v
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			end = min(end, len(s))
		} else {
			for end < len(s) && s[end] != ',' && s[end] != '}' && s[end] != ' ' && s[end] != ']' {
				end++
			}
		}
		if end > v {
			add(span{v, end, KindSecret})
			off = end
		}
	}
}

func isEmailLocal(c byte) bool {
	// RFC 5322 allows more ('/', '=', '?'...), but in logs those separate
	// the address from its surroundings ("/users/a@b.example", "email=").
	return isAlnum(c) || c == '.' || c == '+' || c == '-' || c == '_' || c == '%'
}

// findEmails finds local@domain.tld. The domain needs a dot and a
// two-letter (or longer) alphabetic TLD, so "user@localhost" in a DSN and
// "@media" in CSS stay.
func findEmails(s string, add func(span)) {
	for off := 0; ; {
		i := strings.IndexByte(s[off:], '@')
		if i < 0 {
			return
		}
		i += off
		off = i + 1
		st := i
		for st > 0 && isEmailLocal(s[st-1]) && i-st < 64 {
			st--
		}
		for st < i && s[st] == '.' {
			st++
		}
		if st == i {
			continue
		}
		end := i + 1
		lastDot := -1
		for end < len(s) && (isAlnum(s[end]) || s[end] == '-' || s[end] == '.') {
			if s[end] == '.' {
				lastDot = end
			}
			end++
		}
		for end > i+1 && s[end-1] == '.' { // sentence-ending dot
			end--
			if lastDot == end {
				lastDot = strings.LastIndexByte(s[i+1:end], '.')
				if lastDot >= 0 {
					lastDot += i + 1
				}
			}
		}
		if lastDot <= i+1 || end-lastDot-1 < 2 {
			continue
		}
		tldOK := true
		for k := lastDot + 1; k < end; k++ {
			c := s[k]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				tldOK = false
			}
		}
		if tldOK {
			add(span{st, end, KindEmail})
			off = end
		}
	}
}
