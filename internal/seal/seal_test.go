package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func rawKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func ring(t *testing.T, keys ...[]byte) *KeyRing {
	t.Helper()
	k, err := NewKeyRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := ring(t, rawKey(1))
	for _, pt := range []string{"x", "203.0.113.7", strings.Repeat("é", 1000), `{"email":"a@b.example"}`} {
		s1, err := k.Seal([]byte(pt), "t.c\x00id")
		if err != nil {
			t.Fatal(err)
		}
		s2, _ := k.Seal([]byte(pt), "t.c\x00id")
		if s1 == s2 {
			t.Error("two seals of one value are equal: nonces repeat")
		}
		// A one-letter plaintext turns up in random base64 half the time;
		// only longer ones say anything when found.
		if (len(pt) >= 8 && strings.Contains(s1, pt)) || !strings.HasPrefix(s1, Prefix+k.ActiveID()+":") {
			t.Errorf("sealed form %q", s1)
		}
		got, err := k.Open(s1, "t.c\x00id")
		if err != nil || string(got) != pt {
			t.Errorf("Open = %q, %v", got, err)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	k1 := ring(t, rawKey(1))
	k2 := ring(t, rawKey(2))
	s, _ := k1.Seal([]byte("secret"), "a")
	id, raw, _ := Parse(s)
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)-1] ^= 1
	tampered := Prefix + id + ":" + base64.RawURLEncoding.EncodeToString(flipped)
	cases := []struct {
		name, v, aad string
		k            *KeyRing
		want         error
	}{
		{"wrong key", s, "a", k2, ErrUnknownKey},
		{"moved to another row", s, "b", k1, ErrDecrypt},
		{"tampered", tampered, "a", k1, ErrDecrypt},
		{"no prefix", "hello", "a", k1, ErrFormat},
		{"short id", "gh1:abc:AAAA", "a", k1, ErrFormat},
		{"upper-case id", "gh1:" + strings.ToUpper(id) + ":" + s[len(Prefix)+idLen+1:], "a", k1, ErrFormat},
		{"bad base64", "gh1:" + id + ":!!!", "a", k1, ErrFormat},
		{"too short", "gh1:" + id + ":AAAA", "a", k1, ErrFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.k.Open(c.v, c.aad); !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestOpenStringAndNilRing(t *testing.T) {
	var off *KeyRing
	if v, err := off.SealString("plain", "a"); err != nil || v != "plain" {
		t.Errorf("nil ring SealString = %q, %v", v, err)
	}
	k := ring(t, rawKey(1))
	s, _ := k.SealString("ip", "a")
	if _, err := off.OpenString(s, "a"); !errors.Is(err, ErrNoKey) {
		t.Errorf("nil ring on a sealed value: err = %v, want ErrNoKey", err)
	}
	if v, err := k.OpenString("legacy", "a"); err != nil || v != "legacy" {
		t.Errorf("legacy plaintext = %q, %v", v, err)
	}
	if v, _ := k.SealString("", "a"); v != "" {
		t.Errorf("empty sealed to %q", v)
	}
}

func TestRotation(t *testing.T) {
	old := ring(t, rawKey(1))
	s, _ := old.SealString("contact", "a")
	both := ring(t, rawKey(2), rawKey(1)) // new active, old kept
	r1, err := both.Reseal(s, "a")
	if err != nil || r1 == s || !strings.HasPrefix(r1, Prefix+both.ActiveID()) {
		t.Fatalf("Reseal = %q, %v", r1, err)
	}
	r2, err := both.Reseal(r1, "a")
	if err != nil || r2 != r1 {
		t.Errorf("Reseal not idempotent: %q -> %q, %v", r1, r2, err)
	}
	plain, err := both.Reseal("legacy plaintext", "a")
	if err != nil || !IsSealed(plain) {
		t.Errorf("legacy plaintext not sealed: %q, %v", plain, err)
	}
	newOnly := ring(t, rawKey(2))
	if v, err := newOnly.OpenString(r1, "a"); err != nil || v != "contact" {
		t.Errorf("after rotation the new key alone opens: %q, %v", v, err)
	}
	if _, err := newOnly.OpenString(s, "a"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old value with the old key dropped: err = %v", err)
	}
}

func TestParseKeyRing(t *testing.T) {
	good := b64(rawKey(1))
	cases := []struct {
		name, text string
		n          int
		ok         bool
	}{
		{"one", good + "\n", 1, true},
		{"url alphabet unpadded", base64.RawURLEncoding.EncodeToString(rawKey(0xfb)), 1, true},
		{"ring with comment", "# active\n" + b64(rawKey(2)) + "\n# old\n" + good, 2, true},
		{"comma separated", b64(rawKey(2)) + "," + good, 2, true},
		{"empty", "\n# nothing\n", 0, false},
		{"short key", b64(rawKey(1)[:16]), 0, false},
		{"not base64", "not a key!", 0, false},
		{"duplicate", good + "\n" + good, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := ParseKeyRing(c.text)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if c.ok && len(k.IDs()) != c.n {
				t.Errorf("%d keys, want %d", len(k.IDs()), c.n)
			}
			if err != nil && strings.Contains(err.Error(), good) {
				t.Error("error echoes the key")
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "k")
	os.WriteFile(good, []byte(b64(rawKey(1))+"\n"), 0o600)
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte(b64(rawKey(1))), 0o644)
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	if k, err := Load(good, "", nil); err != nil || k.ActiveID() != KeyID(rawKey(1)) {
		t.Errorf("Load file: %v", err)
	}
	if k, err := Load("", "GK", env(map[string]string{"GK": b64(rawKey(1))})); err != nil || k == nil {
		t.Errorf("Load env: %v", err)
	}
	if k, err := Load("", "", nil); k != nil || err != nil {
		t.Errorf("Load nothing = %v, %v; want nil, nil (encryption off)", k, err)
	}
	for name, f := range map[string]func() (*KeyRing, error){
		"missing file":   func() (*KeyRing, error) { return Load(filepath.Join(dir, "nope"), "", nil) },
		"loose mode":     func() (*KeyRing, error) { return Load(loose, "", nil) },
		"unset env":      func() (*KeyRing, error) { return Load("", "GK", env(nil)) },
		"both":           func() (*KeyRing, error) { return Load(good, "GK", nil) },
		"short from env": func() (*KeyRing, error) { return Load("", "GK", env(map[string]string{"GK": "AAAA"})) },
	} {
		if _, err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateKey()
	if a == b {
		t.Error("two generated keys are equal")
	}
	if _, err := ParseKeyRing(a); err != nil {
		t.Errorf("generated key does not parse: %v", err)
	}
}

// FuzzOpen feeds arbitrary stored values to the parser and decryption: no
// panic, and nothing but a value sealed by this ring may ever open.
func FuzzOpen(f *testing.F) {
	k, _ := NewKeyRing(rawKey(7))
	s, _ := k.Seal([]byte("v"), "a")
	for _, seed := range []string{s, "gh1:", "gh1::", "gh1:000000000000:", s[:len(s)-2], "gh1:" + k.ActiveID() + ":" + strings.Repeat("A", 40), "plain"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, raw, err := Parse(v)
		if err == nil && (len(id) != idLen || len(raw) < nonceSize+16) {
			t.Fatalf("Parse accepted %q", v)
		}
		pt, err := k.Open(v, "a")
		if err == nil && v != s && string(pt) != "v" {
			t.Fatalf("forged value opened: %q -> %q", v, pt)
		}
		_, _ = k.OpenString(v, "a")
		_, _ = k.Reseal(v, "a")
	})
}
