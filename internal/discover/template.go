// Package discover learns the API surface from live traffic: it reduces
// every observed call to a (host, method, path template), keeps bounded,
// sampled aggregates of them, and compares them with the registry to find
// shadow endpoints (traffic the specs do not declare), zombie endpoints
// (calls to deprecated or retired versions) and orphan operations
// (declared, never called). It can also write what it learned as an
// OpenAPI document for an owner to review.
package discover

import "strings"

// Kind is what a path segment looks like.
type Kind uint8

// Segment kinds. Literal segments stay in the template; every other kind
// becomes a parameter.
const (
	KindLiteral Kind = iota
	KindInt          // decimal digits: 42, 1700000000
	KindUUID         // 8-4-4-4-12 hex digits
	KindHex          // 16 or more hex digits with at least one digit: hashes, object ids
	KindDate         // YYYY-MM-DD
	KindString       // long mixed letters and digits (ids, tokens), or free text merged by cardinality
)

// kindBit is the bit of a kind in a kind set.
func kindBit(k Kind) uint32 { return 1 << k }

// Token is the placeholder a kind takes in a template.
func (k Kind) Token() string {
	switch k {
	case KindInt:
		return "{int}"
	case KindUUID:
		return "{uuid}"
	case KindHex:
		return "{hex}"
	case KindDate:
		return "{date}"
	case KindString:
		return "{str}"
	}
	return ""
}

// kindOfToken is the inverse of Token; ok is false for a literal.
func kindOfToken(seg string) (Kind, bool) {
	switch seg {
	case "{int}":
		return KindInt, true
	case "{uuid}":
		return KindUUID, true
	case "{hex}":
		return KindHex, true
	case "{date}":
		return KindDate, true
	case "{str}":
		return KindString, true
	}
	return KindLiteral, false
}

// kindOfSet is the inferred kind of a position given every kind seen there:
// one kind is kept, a mix is a string.
func kindOfSet(set uint32) Kind {
	for k := KindInt; k <= KindString; k++ {
		if set == kindBit(k) {
			return k
		}
	}
	return KindString
}

// maxLiteral is the longest segment kept as a literal: anything longer is
// an identifier or payload smuggled into the path, and keeping it would let
// one caller grow the observer's memory by the length of its URLs.
const maxLiteral = 64

// Classify says what kind of value a raw (escaped) path segment is.
func Classify(seg string) Kind {
	n := len(seg)
	if n == 0 {
		return KindLiteral
	}
	var digits, letters, hex, transitions int
	prev := 0 // 1 letter, 2 digit
	for i := 0; i < n; i++ {
		c := seg[i]
		cls := 0
		switch {
		case '0' <= c && c <= '9':
			digits++
			hex++
			cls = 2
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			letters++
			hex++
			cls = 1
		case 'g' <= c && c <= 'z', 'G' <= c && c <= 'Z':
			letters++
			cls = 1
		}
		if cls != 0 {
			if prev != 0 && prev != cls {
				transitions++
			}
			prev = cls
		}
	}
	switch {
	case digits == n && n <= 19:
		return KindInt
	case n == 36 && isUUID(seg):
		return KindUUID
	case n == 10 && isDate(seg):
		return KindDate
	case digits == n:
		return KindString // more digits than an int64 holds
	case hex == n && n >= 16 && digits > 0:
		return KindHex
	case n > maxLiteral:
		return KindString
	case digits > 0 && letters > 0 && (transitions >= 3 && n >= 8 || n >= 20):
		// Machine-made identifiers switch between letters and digits
		// often (cus_9aB3kLm2, AKIA4X7...); words with a number in them
		// (oauth2, base64url, x509certificates) switch at most twice.
		return KindString
	}
	return KindLiteral
}

func isUUID(s string) bool {
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHexDigit(c) {
				return false
			}
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDate(s string) bool {
	for i := 0; i < 10; i++ {
		c := s[i]
		if i == 4 || i == 7 {
			if c != '-' {
				return false
			}
		} else if c < '0' || c > '9' {
			return false
		}
	}
	month := int(s[5]-'0')*10 + int(s[6]-'0')
	day := int(s[8]-'0')*10 + int(s[9]-'0')
	return month >= 1 && month <= 12 && day >= 1 && day <= 31
}

// Templatize reduces one path to a template by segment kind alone, without
// the cardinality merging the Observer adds: /orders/42/items/7f3a… becomes
// /orders/{int}/items/{hex}. path must be normalised (see route.Normalize).
func Templatize(path string) string {
	if path == "" || path[0] != '/' {
		return ""
	}
	var b strings.Builder
	b.Grow(len(path))
	rest := path[1:]
	for {
		seg, tail, more := strings.Cut(rest, "/")
		b.WriteByte('/')
		if k := Classify(seg); k != KindLiteral {
			b.WriteString(k.Token())
		} else {
			b.WriteString(seg)
		}
		if !more {
			return b.String()
		}
		rest = tail
	}
}

// Shape erases parameter names and kinds: /orders/{orderId} and
// /orders/{int} both become /orders/{}. Two templates with one shape match
// the same requests.
func Shape(template string) string {
	if !strings.Contains(template, "{") {
		return template
	}
	segs := strings.Split(template, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}

// ParamKinds returns the kinds of a learned template's parameters, in order.
func ParamKinds(template string) []Kind {
	var out []Kind
	for _, s := range strings.Split(template, "/") {
		if k, ok := kindOfToken(s); ok {
			out = append(out, k)
		}
	}
	return out
}
