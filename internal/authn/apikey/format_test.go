package apikey

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

func mustGenerate(t testing.TB) (key, id string) {
	t.Helper()
	key, id, err := generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key, id
}

// flip changes the character at i to another base62 digit.
func flip(key string, i int) string {
	c := byte('A')
	if key[i] == 'A' {
		c = 'B'
	}
	return key[:i] + string(c) + key[i+1:]
}

// swapAdjacent swaps the first two differing neighbours of the secret.
func swapAdjacent(key string) string {
	b := []byte(key)
	for i := secStart; i+1 < sumStart; i++ {
		if b[i] != b[i+1] {
			b[i], b[i+1] = b[i+1], b[i]
			return string(b)
		}
	}
	panic("secret of one repeated digit")
}

func TestGenerateMatchesScannerPattern(t *testing.T) {
	re := regexp.MustCompile(Pattern)
	seen := map[string]bool{}
	for range 200 {
		key, id := mustGenerate(t)
		if len(key) != 70 {
			t.Fatalf("len %d", len(key))
		}
		if !re.MatchString(key) || !re.MatchString("token="+key+"&x") {
			t.Fatalf("scanner pattern does not match %s", key)
		}
		got, err := Parse(key)
		if err != nil || got != id {
			t.Fatalf("Parse(%s) = %q, %v; want %q", key, got, err, id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
}

func TestParse(t *testing.T) {
	key, id := mustGenerate(t)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"valid", key, nil},
		{"bad checksum (last char)", flip(key, KeyLen-1), ErrChecksum},
		{"typo in secret", flip(key, secStart+5), ErrChecksum},
		{"typo in id", flip(key, idStart+3), ErrChecksum},
		{"swapped adjacent chars", swapAdjacent(key), ErrChecksum},
		{"truncated by one", key[:KeyLen-1], ErrFormat},
		{"truncated to id", key[:idEnd+1], ErrFormat},
		{"one char too many", key + "a", ErrFormat},
		{"wrong prefix", "ghp_" + key[4:], ErrFormat},
		{"upper-case prefix", "GHK_" + key[4:], ErrFormat},
		{"missing separator", key[:idEnd] + "A" + key[idEnd+1:], ErrFormat},
		{"non-base62 char", key[:40] + "-" + key[41:], ErrFormat},
		{"space inside", key[:40] + " " + key[41:], ErrFormat},
		{"NUL inside", key[:40] + "\x00" + key[41:], ErrFormat},
		{"non-ASCII", key[:40] + "é" + key[42:], ErrFormat},
		{"empty", "", ErrFormat},
		{"checksum over 32 bits", key[:sumStart] + "zzzzzz", ErrChecksum},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && got != id {
				t.Fatalf("id = %q, want %q", got, id)
			}
			if err != nil && got != "" {
				t.Fatalf("id %q returned with an error", got)
			}
		})
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	key, _ := mustGenerate(t)
	bad := flip(key, KeyLen-1)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = Parse(key)
		_, _ = Parse(bad)
	}); n != 0 {
		t.Fatalf("Parse allocates %v times", n)
	}
}

func TestLooksLikeKey(t *testing.T) {
	key, _ := mustGenerate(t)
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{key, true},
		{"prefix-" + key + "-suffix", true},
		{key[:idEnd+1], true}, // truncated keys are still leaks
		{"ghk_ghk_" + key[4:], true},
		{"ghk_docs", false},
		{"ghk_", false},
		{"see ghk_0123456789abcde_x", false}, // 15-digit id
		{"", false},
	} {
		if got := LooksLikeKey(tc.in); got != tc.want {
			t.Errorf("LooksLikeKey(%q) = %v", tc.in, got)
		}
	}
}

// The random digits are uniform: every base62 digit appears, and no digit
// is far from its expected share (a biased modulo would over-weight 0-7).
func TestRandomDigitsUniform(t *testing.T) {
	buf := make([]byte, 62*2000)
	if err := randomDigits(rand.Reader, buf); err != nil {
		t.Fatal(err)
	}
	var counts [256]int
	for _, c := range buf {
		counts[c]++
	}
	for i := 0; i < len(alphabet); i++ {
		if n := counts[alphabet[i]]; n < 1600 || n > 2400 {
			t.Errorf("digit %q appears %d times, want about 2000", alphabet[i], n)
		}
	}
}

func TestRandomDigitsShortReadFails(t *testing.T) {
	if _, _, err := generate(bytes.NewReader(make([]byte, 10))); err == nil {
		t.Fatal("generate with an exhausted random source succeeded")
	}
}

// Hashes are compared in constant time: the verifying code must use
// hmac.Equal and nothing in the package may compare secrets with == or
// bytes.Equal.
func TestConstantTimeComparison(t *testing.T) {
	src, err := os.ReadFile("pepper.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "return hmac.Equal(st.sum[:], want)") {
		t.Fatal("hasher.verify no longer compares with hmac.Equal")
	}
	for _, f := range []string{"pepper.go", "authenticator.go", "service.go", "format.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("bytes.Equal")) || bytes.Contains(b, []byte(".Hash ==")) {
			t.Errorf("%s compares secrets without hmac.Equal", f)
		}
	}
}

func FuzzParse(f *testing.F) {
	for range 4 {
		key, _ := mustGenerate(f)
		f.Add(key)
		f.Add(flip(key, KeyLen-1))
		f.Add(key[:50])
	}
	f.Add("")
	f.Add("ghk_")
	f.Add("ghk_0000000000000000_00000000000000000000000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if id != "" {
				t.Fatalf("id with error")
			}
			return
		}
		// Accepted keys round-trip: the id is the key's ID part, and
		// re-encoding the checksum of the body gives the key back.
		if id != s[idStart:idEnd] || !ValidID(id) {
			t.Fatalf("id %q not the key's id part", id)
		}
		var sum [SumLen]byte
		encodeSum(&sum, crcString(s[:sumStart]))
		if s[:sumStart]+string(sum[:]) != s {
			t.Fatalf("checksum does not round-trip for %q", s)
		}
		if !regexp.MustCompile(`^` + Pattern + `$`).MatchString(s) {
			t.Fatalf("accepted key %q does not match the scanner pattern", s)
		}
	})
}
