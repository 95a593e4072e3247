// Package route turns the raw request-target path into the one canonical
// escaped path the gateway both routes on and forwards upstream, and maps
// host + method + that path to a compiled route.
//
// The point of doing both in one package is that the gateway and the backend
// must never disagree about what was requested: every policy decision is
// taken against the path this package produces, and exactly that path is
// what the upstream receives.
package route

import (
	"errors"
	"unicode/utf8"
)

// ErrBadPath is matched (errors.Is) by every error Normalize returns.
var ErrBadPath = errors.New("bad request path")

// ErrEncodedSlash is matched by the error Normalize returns for %2F or %5C
// when NormalizeOptions.AllowEncodedSlash is off. Such errors also match
// ErrBadPath.
var ErrEncodedSlash = errors.New("encoded slash in request path")

// pathError carries a sentinel and a short reason that is safe to show a
// client: it never echoes the input.
type pathError struct {
	kind   error
	reason string
}

func (e *pathError) Error() string        { return e.kind.Error() + ": " + e.reason }
func (e *pathError) Unwrap() error        { return e.kind }
func (e *pathError) Is(target error) bool { return target == ErrBadPath }

// Preallocated so that refusing hostile input costs no allocation.
var (
	errNoLeadingSlash = &pathError{ErrBadPath, "path must start with /"}
	errBadEscape      = &pathError{ErrBadPath, "malformed percent-encoding"}
	errControl        = &pathError{ErrBadPath, "control character in path"}
	errBackslash      = &pathError{ErrBadPath, "backslash in path"}
	errBadUTF8        = &pathError{ErrBadPath, "path is not valid UTF-8"}
	errEncodedSlash   = &pathError{ErrEncodedSlash, "encoded / or \\ in path"}
)

// NormalizeOptions tunes Normalize. The zero value is the strict default.
type NormalizeOptions struct {
	// AllowEncodedSlash keeps %2F and %5C (always encoded, never turned
	// into a separator) instead of refusing the request. Only for APIs
	// whose identifiers really contain slashes: a backend that decodes %2F
	// before routing will then see a different path than the gateway did.
	AllowEncodedSlash bool
}

// Character classes of the raw path bytes.
const (
	classEncode     uint8 = iota // not allowed raw in a path: re-encode as %XX
	classUnreserved              // ALPHA DIGIT - . _ ~ (RFC 3986 §2.3)
	classSubDelim                // ! $ & ' ( ) * + , = : @ allowed raw, kept as sent
	classSemicolon               // ; starts a path parameter
	classSlash
	classPercent
	classBackslash
	classControl // 0x00–0x1F, 0x7F
)

var charClass = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = classUnreserved
		t[c-'a'+'A'] = classUnreserved
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = classUnreserved
	}
	for _, c := range "-._~" {
		t[c] = classUnreserved
	}
	for _, c := range "!$&'()*+,=:@" {
		t[c] = classSubDelim
	}
	for c := 0; c < 0x20; c++ {
		t[c] = classControl
	}
	t[0x7f] = classControl
	t[';'] = classSemicolon
	t['/'] = classSlash
	t['%'] = classPercent
	t['\\'] = classBackslash
	return t
}()

const upperHex = "0123456789ABCDEF"

// unhex returns the value of a hex digit of either case, or 0xff.
func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 0xff
}

// Normalize returns the canonical form of escapedPath, the raw (still
// percent-encoded) path of the request target, before any '?'. The result is
// what the router matches and what is forwarded upstream. Each rule closes a
// known way of making a gateway and a backend read one request differently:
//
//   - The path must start with '/': absolute-form, authority-form and '*'
//     targets are the caller's business.
//   - Percent-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are
//     decoded, all other escapes are kept with upper-case hex, so "/%61dmin"
//     cannot dodge a rule written for "/admin" (RFC 3986 §6.2.2.2).
//   - Decoding happens once: "%252e" is the text "%2e", never a dot, and
//     stays "%252e" (the "2e" after the escape is data, so its case is kept).
//     Decoding twice is how "%252e%252e" became ".." in old servers.
//   - Malformed escapes ("%", "%4", "%G1") are refused: parsers disagree on
//     how to repair them.
//   - %2F and %5C are refused (ErrEncodedSlash) unless
//     opt.AllowEncodedSlash: many backends decode them into separators after
//     routing, turning "/orders/1%2F..%2F..%2Fadmin" into "/admin".
//   - A raw '\' is refused: IIS, some Java containers and Windows file
//     servers treat it as '/'.
//   - Control characters, raw or escaped (%00–%1F, %7F), are refused: NUL
//     truncates paths in C-based backends and CR/LF split headers and logs.
//   - Escaped octets must decode to valid UTF-8: overlong forms such as
//     %C0%AE ("." to a lax decoder) are refused.
//   - ';' path parameters are removed from every segment: Tomcat and Spring
//     ignore ";..." so "/admin;x" and "/admin/..;/" would reach "/admin" on
//     the backend under a different name at the gateway. An escaped %3B is an
//     ordinary character and stays.
//   - Dot segments are resolved after decoding (RFC 3986 §5.2.4), so
//     "%2e%2e", "%2E." and ".%2e" all count as ".."; ".." never climbs above
//     the root.
//   - Runs of '/' collapse to one: "//admin" is "/admin" to most backends.
//   - Raw bytes that may not appear in a path (space, '"', '<', '>', '[',
//     ']', '^', '`', '{', '|', '}', '#', '?', bytes >= 0x80) are
//     percent-encoded, so a raw byte and its escape are one spelling.
//   - A trailing slash and letter case are preserved: paths are
//     case-sensitive and "/orders/" is not "/orders".
//
// Sub-delimiters (! $ & ' ( ) * + , = : @) are kept as sent, raw or escaped:
// RFC 3986 says their escaped and raw forms may differ in meaning. The route
// table compensates where it matters (see Table.Match).
//
// If escapedPath is already canonical (the common case) it is returned
// without allocating. Every error matches ErrBadPath and says nothing about
// the input beyond the rule it broke. Normalize runs in time linear in
// len(escapedPath); bounding that length is the server's job.
func Normalize(escapedPath string, opt NormalizeOptions) (string, error) {
	if isCanonical(escapedPath, opt) {
		return escapedPath, nil
	}
	return normalizeSlow(escapedPath, opt)
}

// isDotSegment reports whether a raw segment is "." or "..".
func isDotSegment(s string) bool {
	return (len(s) == 1 && s[0] == '.') || (len(s) == 2 && s[0] == '.' && s[1] == '.')
}

// isCanonical is the allocation-free fast path: it reports whether p is
// certainly a fixed point of normalizeSlow. Anything unusual answers false
// and is left to normalizeSlow, which also produces every error.
func isCanonical(p string, opt NormalizeOptions) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	seg := 1
	high := false
	for i := 1; i < len(p); i++ {
		switch charClass[p[i]] {
		case classUnreserved, classSubDelim:
		case classSlash:
			if i == seg || isDotSegment(p[seg:i]) {
				return false
			}
			seg = i + 1
		case classPercent:
			if i+2 >= len(p) {
				return false
			}
			hi, lo := p[i+1], p[i+2]
			if hi > 'F' || lo > 'F' { // lower-case hex or not hex at all
				return false
			}
			h, l := unhex(hi), unhex(lo)
			if h > 0xf || l > 0xf {
				return false
			}
			v := h<<4 | l
			switch {
			case v >= utf8.RuneSelf:
				high = true
			case v == '/' || v == '\\':
				if !opt.AllowEncodedSlash {
					return false
				}
			case charClass[v] == classUnreserved || charClass[v] == classControl:
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return !isDotSegment(p[seg:]) && (!high || validEscapedUTF8(p))
}

// normalizeSlow implements the rules documented on Normalize.
func normalizeSlow(p string, opt NormalizeOptions) (string, error) {
	if len(p) == 0 || p[0] != '/' {
		return "", errNoLeadingSlash
	}
	var stack [256]byte
	buf := stack[:0]
	trailing := false // the path ends with '/'
	high := false     // an octet >= 0x80 was emitted: validate UTF-8
	for i := 0; i < len(p); {
		// p[i] == '/': start of a segment.
		start := len(buf)
		buf = append(buf, '/')
		inParam := false
		j := i + 1
		for ; j < len(p) && p[j] != '/'; j++ {
			c := p[j]
			switch charClass[c] {
			case classUnreserved, classSubDelim:
				if !inParam {
					buf = append(buf, c)
				}
			case classSemicolon:
				inParam = true
			case classBackslash:
				return "", errBackslash
			case classControl:
				return "", errControl
			case classPercent:
				if j+2 >= len(p) {
					return "", errBadEscape
				}
				h, l := unhex(p[j+1]), unhex(p[j+2])
				if h > 0xf || l > 0xf {
					return "", errBadEscape
				}
				v := h<<4 | l
				j += 2
				switch charClass[v] {
				case classControl:
					return "", errControl
				case classSlash, classBackslash:
					if !opt.AllowEncodedSlash {
						return "", errEncodedSlash
					}
				case classUnreserved:
					if !inParam {
						buf = append(buf, v)
					}
					continue
				}
				if !inParam {
					high = high || v >= utf8.RuneSelf
					buf = append(buf, '%', upperHex[v>>4], upperHex[v&0xf])
				}
			default: // classEncode
				if !inParam {
					high = high || c >= utf8.RuneSelf
					buf = append(buf, '%', upperHex[c>>4], upperHex[c&0xf])
				}
			}
		}
		last := j >= len(p)
		switch seg := buf[start+1:]; {
		case len(seg) == 0, len(seg) == 1 && seg[0] == '.':
			buf = buf[:start]
			trailing = last
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			buf = buf[:start]
			// Drop the previous output segment. Each byte is scanned at
			// most once here over the whole call, so this stays linear.
			for len(buf) > 0 && buf[len(buf)-1] != '/' {
				buf = buf[:len(buf)-1]
			}
			if len(buf) > 0 {
				buf = buf[:len(buf)-1]
			}
			trailing = last
		default:
			trailing = false
		}
		i = j
	}
	if trailing || len(buf) == 0 {
		buf = append(buf, '/')
	}
	if high && !validEscapedUTF8(buf) {
		return "", errBadUTF8
	}
	return string(buf), nil
}

// validEscapedUTF8 reports whether the octets above 0x7f in s, all of which
// are %XX escapes with valid hex, form valid UTF-8 sequences (no overlong
// forms, surrogates or truncated sequences).
func validEscapedUTF8[S string | []byte](s S) bool {
	var seq [utf8.UTFMax]byte
	n, want := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			if want > 0 {
				return false
			}
			continue
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		i += 2
		if want > 0 {
			if v&0xc0 != 0x80 {
				return false
			}
			seq[n] = v
			n++
			if n == want {
				if !utf8.Valid(seq[:n]) {
					return false
				}
				n, want = 0, 0
			}
			continue
		}
		switch {
		case v < utf8.RuneSelf:
			continue
		case v&0xe0 == 0xc0:
			want = 2
		case v&0xf0 == 0xe0:
			want = 3
		case v&0xf8 == 0xf0:
			want = 4
		default:
			return false
		}
		seq[0], n = v, 1
	}
	return want == 0
}
