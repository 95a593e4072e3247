// Package seal encrypts values the store keeps at rest: AES-256-GCM with a
// random 96-bit nonce per value, under the active key of a KeyRing. Every
// sealed value names its key, so a ring holding the new key and the old
// ones decrypts everything while `gatehouse keys rotate-data-key`
// re-encrypts in place:
//
//	gh1:<key id>:<base64url(nonce || ciphertext || tag)>
//
// The key ID is derived from the key itself (a truncated SHA-256), so a
// wrong key can never be mistaken for the right one: it has another ID,
// and decryption fails loudly instead of returning garbage. Each value is
// bound to where it lives (table, column and row) as GCM additional data,
// so a sealed value copied into another row or column does not decrypt.
//
// Secrets that only need verifying (API keys, client secrets) are hashed by
// the authn packages, never sealed: nothing must be able to decrypt them.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Prefix starts every sealed value; the "1" versions the format.
const Prefix = "gh1:"

// KeySize is the length of a data key: AES-256.
const KeySize = 32

// idLen is the hex length of a key ID (48 bits: IDs only need to tell a
// handful of keys apart, and a wrong key is caught by GCM anyway).
const idLen = 12

const nonceSize = 12

// Errors. None of them carries any part of a value.
var (
	ErrFormat     = errors.New("seal: not a sealed value (want gh1:<key id>:<base64url>)")
	ErrUnknownKey = errors.New("seal: value is sealed under a key the data key ring does not hold")
	ErrDecrypt    = errors.New("seal: value does not decrypt (wrong key, or tampered or moved value)")
	ErrNoKey      = errors.New("seal: value is encrypted but no data key is configured (store.encryption)")
)

// KeyRing holds one active key (used to seal) and any number of older keys
// (used only to open). A nil *KeyRing means encryption is off.
type KeyRing struct {
	active *dataKey
	byID   map[string]*dataKey
	order  []string // IDs, active first
}

type dataKey struct {
	id   string
	aead cipher.AEAD
	raw  []byte // kept only for Derive
}

// KeyID is the ID a raw key gets in sealed values.
func KeyID(raw []byte) string {
	sum := sha256.Sum256(append([]byte("gatehouse data key id\x00"), raw...))
	return hex.EncodeToString(sum[:])[:idLen]
}

// NewKeyRing builds a ring from raw keys; the first is the active one.
func NewKeyRing(keys ...[]byte) (*KeyRing, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no data key")
	}
	k := &KeyRing{byID: map[string]*dataKey{}}
	for i, raw := range keys {
		if len(raw) != KeySize {
			return nil, fmt.Errorf("seal: data key %d is %d bytes, want %d (create one with: gatehouse keys gen-data-key)", i+1, len(raw), KeySize)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("seal: data key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: data key %d: %w", i+1, err)
		}
		dk := &dataKey{id: KeyID(raw), aead: aead, raw: append([]byte(nil), raw...)}
		if _, dup := k.byID[dk.id]; dup {
			return nil, fmt.Errorf("seal: data key %d repeats an earlier key", i+1)
		}
		k.byID[dk.id] = dk
		k.order = append(k.order, dk.id)
		if i == 0 {
			k.active = dk
		}
	}
	return k, nil
}

// ParseKeyRing reads keys as text: base64 (standard or URL alphabet, padded
// or not), one per line or separated by commas or spaces; lines starting
// with '#' are comments. The first key is the active one; later keys are
// kept to open values sealed before a rotation.
func ParseKeyRing(text string) (*KeyRing, error) {
	var keys [][]byte
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			raw, err := decodeKey(f)
			if err != nil {
				return nil, fmt.Errorf("seal: data key %d: %w", len(keys)+1, err)
			}
			keys = append(keys, raw)
		}
	}
	return NewKeyRing(keys...)
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64 (create one with: gatehouse keys gen-data-key)")
}

// Load reads the ring from a file or from an environment variable (exactly
// one of them non-empty). A file readable by group or others is refused:
// it holds the key to every sealed value.
func Load(file, env string, lookup func(string) (string, bool)) (*KeyRing, error) {
	switch {
	case file != "" && env != "":
		return nil, errors.New("seal: set a key file or an environment variable, not both")
	case file != "":
		fi, err := os.Stat(file)
		if err != nil {
			return nil, fmt.Errorf("seal: read data key file: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("seal: data key file %s is accessible by group or others (mode %v): chmod 600 it", file, fi.Mode().Perm())
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("seal: read data key file: %w", err)
		}
		k, err := ParseKeyRing(string(b))
		if err != nil {
			return nil, fmt.Errorf("%w (in %s)", err, file)
		}
		return k, nil
	case env != "":
		if lookup == nil {
			lookup = os.LookupEnv
		}
		v, ok := lookup(env)
		if !ok || strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("seal: environment variable %s holding the data key is not set", env)
		}
		k, err := ParseKeyRing(v)
		if err != nil {
			return nil, fmt.Errorf("%w (in $%s)", err, env)
		}
		return k, nil
	}
	return nil, nil
}

// GenerateKey returns a new random data key, base64-encoded.
func GenerateKey() (string, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("seal: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

// ActiveID is the ID of the key new values are sealed under.
func (k *KeyRing) ActiveID() string { return k.active.id }

// Derive returns a key for another purpose (label), derived from the
// active key with HMAC-SHA-256 so that it reveals nothing about it.
func (k *KeyRing) Derive(label string) []byte {
	m := hmac.New(sha256.New, k.active.raw)
	m.Write([]byte("gatehouse derive\x00" + label))
	return m.Sum(nil)
}

// IDs lists the ring's key IDs, the active one first.
func (k *KeyRing) IDs() []string { return append([]string(nil), k.order...) }

// Seal encrypts plaintext under the active key, bound to aad.
func (k *KeyRing) Seal(plaintext []byte, aad string) (string, error) {
	buf := make([]byte, nonceSize, nonceSize+len(plaintext)+k.active.aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("seal: nonce: %w", err)
	}
	buf = k.active.aead.Seal(buf, buf[:nonceSize], plaintext, []byte(aad))
	return Prefix + k.active.id + ":" + base64.RawURLEncoding.EncodeToString(buf), nil
}

// Parse splits a sealed value into its key ID and raw bytes (nonce,
// ciphertext and tag) without decrypting it.
func Parse(sealed string) (keyID string, raw []byte, err error) {
	rest, ok := strings.CutPrefix(sealed, Prefix)
	if !ok {
		return "", nil, ErrFormat
	}
	id, body, ok := strings.Cut(rest, ":")
	if !ok || len(id) != idLen || !isLowerHex(id) {
		return "", nil, ErrFormat
	}
	raw, err = base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < nonceSize+16 {
		return "", nil, ErrFormat
	}
	return id, raw, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Open decrypts a sealed value bound to aad.
func (k *KeyRing) Open(sealed, aad string) ([]byte, error) {
	id, raw, err := Parse(sealed)
	if err != nil {
		return nil, err
	}
	dk := k.byID[id]
	if dk == nil {
		return nil, fmt.Errorf("%w (key id %s; the ring holds %s)", ErrUnknownKey, id, strings.Join(k.order, ", "))
	}
	pt, err := dk.aead.Open(nil, raw[:nonceSize], raw[nonceSize:], []byte(aad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// IsSealed reports whether a stored value is in the sealed format's shape.
func IsSealed(stored string) bool { return strings.HasPrefix(stored, Prefix) }

// SealString is what a store calls before writing a sensitive column: with
// a nil ring (encryption off) it returns plain as is; the empty string
// stays empty (there is nothing to hide in "none").
func (k *KeyRing) SealString(plain, aad string) (string, error) {
	if k == nil || plain == "" {
		return plain, nil
	}
	return k.Seal([]byte(plain), aad)
}

// OpenString is what a store calls after reading a sensitive column. A
// value that is not sealed is returned as is: it was written before
// encryption was turned on (rotate-data-key seals those). A sealed value
// with a nil ring is ErrNoKey: never hand ciphertext on as if it were data.
func (k *KeyRing) OpenString(stored, aad string) (string, error) {
	if !IsSealed(stored) {
		return stored, nil
	}
	if k == nil {
		return "", ErrNoKey
	}
	pt, err := k.Open(stored, aad)
	if err != nil {
		return "", err
	}
	return string(pt), nil
}

// Reseal returns stored sealed under the active key: unchanged when it
// already is (or is empty), re-encrypted when under an older key, and
// encrypted when it is legacy plaintext. It is the step of
// rotate-data-key, idempotent by construction.
func (k *KeyRing) Reseal(stored, aad string) (string, error) {
	if stored == "" {
		return stored, nil
	}
	if IsSealed(stored) {
		id, _, err := Parse(stored)
		if err != nil {
			return "", err
		}
		if id == k.active.id {
			// Still prove it opens: a value that does not is reported
			// now rather than found by the gateway later.
			if _, err := k.Open(stored, aad); err != nil {
				return "", err
			}
			return stored, nil
		}
	}
	plain, err := k.OpenString(stored, aad)
	if err != nil {
		return "", err
	}
	return k.Seal([]byte(plain), aad)
}

// AAD is the additional data binding a value to its table, column and row.
func AAD(table, column, row string) string { return table + "." + column + "\x00" + row }
