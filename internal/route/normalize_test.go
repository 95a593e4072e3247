package route

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

var (
	strict     = NormalizeOptions{}
	allowSlash = NormalizeOptions{AllowEncodedSlash: true}
)

// normalizeCases is the normalisation table. want is the canonical output;
// err, when set, is the sentinel the error must match (want is then unused).
var normalizeCases = []struct {
	name string
	in   string
	opt  NormalizeOptions
	want string
	err  error
}{
	// Already canonical: returned as is.
	{"clean", "/orders/v1/orders/12345", strict, "/orders/v1/orders/12345", nil},
	{"root", "/", strict, "/", nil},
	{"trailing slash kept", "/a/b/", strict, "/a/b/", nil},
	{"case kept", "/ORDERS", strict, "/ORDERS", nil},
	{"three dots is a name", "/a/.../b", strict, "/a/.../b", nil},
	{"sub-delims kept raw", "/a:b@c!$&'()*+,=", strict, "/a:b@c!$&'()*+,=", nil},
	{"escaped sub-delim kept", "/a%3Ab", strict, "/a%3Ab", nil},
	{"escaped percent kept", "/a%25", strict, "/a%25", nil},

	// Not a path.
	{"empty", "", strict, "", ErrBadPath},
	{"relative", "orders", strict, "", ErrBadPath},
	{"asterisk form", "*", strict, "", ErrBadPath},
	{"absolute form", "http://evil/admin", strict, "", ErrBadPath},

	// Dot segments, RFC 3986 §5.2.4, after decoding.
	{"dotdot climbs", "/orders/v1/../../admin", strict, "/admin", nil},
	{"encoded dotdot", "/orders/%2e%2e/admin", strict, "/admin", nil},
	{"encoded dotdot upper", "/orders/%2E%2E/admin", strict, "/admin", nil},
	{"half encoded dotdot", "/orders/.%2e/admin", strict, "/admin", nil},
	{"half encoded dotdot 2", "/orders/%2E./admin", strict, "/admin", nil},
	{"leading dot", "/./a", strict, "/a", nil},
	{"dots inside and at end", "/a/./b/.", strict, "/a/b/", nil},
	{"dotdot at end keeps slash", "/a/b/..", strict, "/a/", nil},
	{"encoded dot at end", "/a/b/%2e", strict, "/a/b/", nil},
	{"above root stays at root", "/../../..", strict, "/", nil},
	{"single dotdot", "/..", strict, "/", nil},
	{"encoded single dot", "/%2e", strict, "/", nil},
	{"upper-case segments climb", "/A/B/../C", strict, "/A/C", nil},
	{"three encoded dots is a name", "/a/%2e%2e%2e", strict, "/a/...", nil},

	// Double decoding never happens.
	{"double encoded dotdot", "/orders/%252e%252e/admin", strict, "/orders/%252e%252e/admin", nil},
	{"double encoded slash", "/a/%252F", strict, "/a/%252F", nil},
	{"double encoded lower hex", "/a/%252f", strict, "/a/%252f", nil},

	// Slashes.
	{"double slash", "/orders//1", strict, "/orders/1", nil},
	{"slash runs", "//a///b", strict, "/a/b", nil},
	{"trailing slash run", "/a/b//", strict, "/a/b/", nil},
	{"encoded slash", "/orders%2F1", strict, "", ErrEncodedSlash},
	{"encoded slash lower", "/orders%2f1", strict, "", ErrEncodedSlash},
	{"encoded backslash", "/orders%5c1", strict, "", ErrEncodedSlash},
	{"encoded backslash upper", "/orders%5C1", strict, "", ErrEncodedSlash},
	{"encoded slash after dotdot", "/a/..%2F", strict, "", ErrEncodedSlash},
	{"raw backslash", "/orders\\1", strict, "", ErrBadPath},
	{"raw backslash even when allowed", "/orders\\1", allowSlash, "", ErrBadPath},
	{"allowed encoded slash kept", "/a%2fb", allowSlash, "/a%2Fb", nil},
	{"allowed encoded backslash not a separator", "/a%5cb/..", allowSlash, "/", nil},
	{"allowed encoded slash alone", "/%2F", allowSlash, "/%2F", nil},
	{"allowed encoded slash is no dot", "/a/.%2F./b", allowSlash, "/a/.%2F./b", nil},

	// Path parameters.
	{"matrix param", "/orders/1;x=y", strict, "/orders/1", nil},
	{"empty matrix param", "/admin;/", strict, "/admin/", nil},
	{"jsessionid", "/admin;jsessionid=x/", strict, "/admin/", nil},
	{"param mid path", "/orders;/1", strict, "/orders/1", nil},
	{"many params", "/a;x=1;y=2/b", strict, "/a/b", nil},
	{"tomcat dotdot semicolon", "/orders/..;/admin", strict, "/admin", nil},
	{"param only segment", "/;x", strict, "/", nil},
	{"param only last segment", "/a/;x", strict, "/a/", nil},
	{"param then dotdot", "/a/b;x/..", strict, "/a/", nil},
	{"encoded semicolon is data", "/a/%3b", strict, "/a/%3B", nil},
	{"encoded semicolon upper", "/a/%3B", strict, "/a/%3B", nil},
	{"control in param refused", "/a;%00/b", strict, "", ErrBadPath},
	{"encoded slash in param refused", "/a;%2F/b", strict, "", ErrEncodedSlash},

	// Controls.
	{"encoded NUL", "/orders/%00", strict, "", ErrBadPath},
	{"raw NUL", "/orders/\x00", strict, "", ErrBadPath},
	{"encoded CRLF", "/orders/%0d%0aX:1", strict, "", ErrBadPath},
	{"encoded DEL", "/orders/%7f", strict, "", ErrBadPath},
	{"raw tab", "/orders/\t", strict, "", ErrBadPath},
	{"raw DEL", "/orders/\x7f", strict, "", ErrBadPath},

	// Unreserved escapes are decoded, others upper-cased.
	{"tilde", "/%7Eu", strict, "/~u", nil},
	{"tilde lower", "/%7eu", strict, "/~u", nil},
	{"letter", "/%41", strict, "/A", nil},
	{"encoded letters", "/%61dmin", strict, "/admin", nil},
	{"several unreserved", "/a%7e%7E%2D%5f", strict, "/a~~-_", nil},
	{"lower hex upper-cased", "/a%3ab", strict, "/a%3Ab", nil},
	{"utf-8 escapes", "/caf%c3%a9", strict, "/caf%C3%A9", nil},
	{"euro", "/%e2%82%ac", strict, "/%E2%82%AC", nil},

	// Raw bytes that are not allowed in a path get one spelling.
	{"raw utf-8", "/café", strict, "/caf%C3%A9", nil},
	{"raw space", "/a b", strict, "/a%20b", nil},
	{"raw braces", "/a/{id}", strict, "/a/%7Bid%7D", nil},
	{"raw hash and question", "/a#b?c", strict, "/a%23b%3Fc", nil},
	{"raw quote and angle", "/a\"<>", strict, "/a%22%3C%3E", nil},

	// UTF-8 must be valid.
	{"overlong dot", "/%C0%AE%C0%AE/admin", strict, "", ErrBadPath},
	{"surrogate", "/%ED%A0%80", strict, "", ErrBadPath},
	{"truncated sequence", "/%C3", strict, "", ErrBadPath},
	{"sequence broken by slash", "/%C3/%A9", strict, "", ErrBadPath},
	{"sequence broken by ascii", "/%C3a", strict, "", ErrBadPath},
	{"stray continuation", "/%A9", strict, "", ErrBadPath},
	{"raw latin-1", "/caf\xe9", strict, "", ErrBadPath},

	// Malformed escapes.
	{"lone percent", "/%", strict, "", ErrBadPath},
	{"non-hex escape", "/%G1", strict, "", ErrBadPath},
	{"short escape", "/%4", strict, "", ErrBadPath},
	{"short escape mid", "/a%4/b", strict, "", ErrBadPath},
	{"percent percent", "/%%41", strict, "", ErrBadPath},
	{"percent slash", "/%/a", strict, "", ErrBadPath},
}

func TestNormalize(t *testing.T) {
	for _, tc := range normalizeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.in, tc.opt)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("Normalize(%q) = %q, want error %v", tc.in, got, tc.err)
				}
				if !errors.Is(err, tc.err) || !errors.Is(err, ErrBadPath) {
					t.Fatalf("Normalize(%q) error %v, want errors.Is %v and ErrBadPath", tc.in, err, tc.err)
				}
				if len(tc.in) > 2 && strings.Contains(err.Error(), tc.in) {
					t.Fatalf("error %q echoes the input", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize(%q) error %v, want %q", tc.in, err, tc.want)
			}
			if got != tc.want {
				t.Fatalf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if msg := canonicalProblem(got, tc.opt); msg != "" {
				t.Fatalf("Normalize(%q) = %q: %s", tc.in, got, msg)
			}
			again, err := Normalize(got, tc.opt)
			if err != nil || again != got {
				t.Fatalf("not idempotent: Normalize(%q) = %q, %v", got, again, err)
			}
		})
	}
}

func TestNormalizeSentinelsDistinct(t *testing.T) {
	_, err := Normalize("/a%00", strict)
	if errors.Is(err, ErrEncodedSlash) {
		t.Fatalf("control-character error %v matches ErrEncodedSlash", err)
	}
}

func TestNormalizeCleanDoesNotAllocate(t *testing.T) {
	for _, p := range []string{"/orders/v1/orders/12345", "/", "/a/b/", "/a%3Ab:c", "/x/%25"} {
		allocs := testing.AllocsPerRun(100, func() {
			if out, err := Normalize(p, strict); err != nil || out != p {
				t.Fatalf("Normalize(%q) = %q, %v", p, out, err)
			}
		})
		if allocs != 0 {
			t.Errorf("Normalize(%q): %v allocs, want 0", p, allocs)
		}
	}
	allocs := testing.AllocsPerRun(100, func() { _, _ = Normalize("/a/%00", strict) })
	if allocs != 0 {
		t.Errorf("refusing a path: %v allocs, want 0", allocs)
	}
}

// canonicalProblem describes how s breaks the output invariants, or is "".
func canonicalProblem(s string, opt NormalizeOptions) string {
	switch {
	case s == "" || s[0] != '/':
		return "does not start with /"
	case strings.Contains(s, "//"):
		return "contains //"
	case strings.Contains(s, "/./") || strings.HasSuffix(s, "/."):
		return "contains a . segment"
	case strings.Contains(s, "/../") || strings.HasSuffix(s, "/.."):
		return "contains a .. segment"
	case strings.ContainsAny(s, "\\;"):
		return "contains a raw \\ or ;"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch charClass[c] {
		case classUnreserved, classSubDelim, classSlash:
			continue
		case classPercent:
		default:
			return "contains a raw byte that must be encoded"
		}
		if i+2 >= len(s) || !strings.ContainsRune(upperHex, rune(s[i+1])) || !strings.ContainsRune(upperHex, rune(s[i+2])) {
			return "escape is malformed or not upper-case"
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		switch {
		case charClass[v] == classUnreserved:
			return "contains an escaped unreserved character"
		case charClass[v] == classControl:
			return "contains an escaped control character"
		case (v == '/' || v == '\\') && !opt.AllowEncodedSlash:
			return "contains an encoded slash"
		}
		i += 2
	}
	if !utf8.ValidString(decodeAll(s)) {
		return "does not decode to UTF-8"
	}
	return ""
}

// decodeAll percent-decodes every escape of a canonical path.
func decodeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkNormalize asserts every property of Normalize on one input.
func checkNormalize(t *testing.T, in string, opt NormalizeOptions) {
	t.Helper()
	got, err := Normalize(in, opt)
	slow, slowErr := normalizeSlow(in, opt)
	if got != slow || (err == nil) != (slowErr == nil) {
		t.Fatalf("fast and slow paths disagree on %q: %q, %v vs %q, %v", in, got, err, slow, slowErr)
	}
	if err != nil {
		if !errors.Is(err, ErrBadPath) {
			t.Fatalf("Normalize(%q) error %v does not match ErrBadPath", in, err)
		}
		return
	}
	if msg := canonicalProblem(got, opt); msg != "" {
		t.Fatalf("Normalize(%q) = %q: %s", in, got, msg)
	}
	again, err := Normalize(got, opt)
	if err != nil || again != got {
		t.Fatalf("not idempotent: Normalize(%q) = %q, then %q, %v", in, got, again, err)
	}
	if !isCanonical(got, opt) {
		t.Fatalf("output %q of %q is not recognised by the fast path", got, in)
	}
	if opt.AllowEncodedSlash {
		return
	}
	// Allowing encoded slashes only ever turns errors into outputs.
	if loose, err := Normalize(in, allowSlash); err != nil || loose != got {
		t.Fatalf("AllowEncodedSlash changed %q: %q, %v vs %q", in, loose, err, got)
	}
}

var pathTokens = []string{
	"/", "/", "/", "//", ".", "..", "%2e", "%2E", "%2f", "%5C", "a", "B", "orders", ";", ";x=1",
	"%3b", "%41", "%7e", "%25", "%252e", "%C3%A9", "%c3", "%a9", "%C0%AE", "\\", "%00", " ", "~",
	"%", "%4", "é", "{", "?", ":", "@", "%3A", "\x7f", "%zz",
}

// TestNormalizeProperties checks idempotence and the output invariants on
// paths assembled from the pieces attacks are made of.
func TestNormalizeProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50000 {
		var b strings.Builder
		if rng.IntN(20) != 0 {
			b.WriteByte('/')
		}
		for n := rng.IntN(12); n > 0; n-- {
			b.WriteString(pathTokens[rng.IntN(len(pathTokens))])
		}
		checkNormalize(t, b.String(), strict)
		checkNormalize(t, b.String(), allowSlash)
	}
}

func TestNormalizeLinear(t *testing.T) {
	for _, unit := range []string{"/..", "/a", "/%2e%2e", "/a;x", "//", "/%C3%A9"} {
		in := "/" + strings.Repeat(unit, 1<<16)
		if _, err := Normalize(in, strict); err != nil {
			t.Fatalf("%q repeated: %v", unit, err)
		}
	}
}
