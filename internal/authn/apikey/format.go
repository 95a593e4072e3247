// Package apikey issues, verifies, rotates and revokes Gatehouse API keys.
//
// # Key format
//
// A key is 70 characters (no example here: it would trip the very
// scanners the format is made for):
//
//	ghk_<id: 16 base62>_<secret: 43 base62><checksum: 6 base62>
//
// The parts are:
//   - "ghk_", a fixed prefix, so people and secret scanners recognise a
//     Gatehouse key wherever it leaks (logs, tickets, repositories);
//   - the ID, 16 random base62 characters (~95 bits): the public credential
//     ID the store is looked up by. It is not secret: it shows in
//     `gatehouse keys list`, audit records and the Principal;
//   - "_";
//   - the secret, 43 random base62 characters: 256 bits of entropy
//     (43·log2(62) ≈ 256.03), as much as 32 random bytes;
//   - the checksum, CRC-32 (IEEE) of everything before it, written as 6
//     base62 digits, most significant first, zero-padded.
//
// Base62 digits are 0-9, A-Z, a-z in that order. The checksum is no defence
// (anyone can compute it); it lets the gateway refuse typos, truncations and
// garbage before any store lookup, and lets scanners drop false positives
// offline. The secret-scanner pattern, [Pattern], is
//
//	\bghk_[A-Za-z0-9]{16}_[A-Za-z0-9]{49}\b
//
// # Storage
//
// Only HMAC-SHA-256(pepper, whole key) is stored (store.Credential.Hash),
// keyed with a server pepper of at least 32 bytes that lives outside the
// store (see [LoadPepper]), so a stolen database alone verifies nothing.
// Hashes are compared with hmac.Equal.
package apikey

import (
	"errors"
	"hash/crc32"
	"io"
)

// Key layout constants.
const (
	// Prefix starts every key.
	Prefix    = "ghk_"
	IDLen     = 16
	SecretLen = 43
	SumLen    = 6
	// KeyLen is the length of a whole key.
	KeyLen = len(Prefix) + IDLen + 1 + SecretLen + SumLen

	idStart   = len(Prefix)
	idEnd     = idStart + IDLen
	secStart  = idEnd + 1
	sumStart  = secStart + SecretLen
	alphabet  = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	maxUnbias = 248 // 4·62: bytes at or above it are redrawn, so every digit is equally likely
)

// Pattern is the regular expression secret scanners (and redaction) can use
// to find Gatehouse API keys.
const Pattern = `\bghk_[A-Za-z0-9]{16}_[A-Za-z0-9]{49}\b`

// Parse errors. They carry no part of the input, so they are safe to log.
var (
	ErrFormat   = errors.New("apikey: not a Gatehouse API key (want ghk_<16 base62>_<49 base62>)")
	ErrChecksum = errors.New("apikey: checksum mismatch (mistyped or truncated key)")
)

// digitVal maps a byte to its base62 value, or 0xff.
var digitVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// Parse checks the format and checksum of key and returns its public ID (a
// substring of key: no allocation). It does no I/O and no cryptography, so
// it runs before any store lookup.
func Parse(key string) (id string, err error) {
	if len(key) != KeyLen || key[:idStart] != Prefix || key[idEnd] != '_' {
		return "", ErrFormat
	}
	for i := idStart; i < KeyLen; i++ {
		if i != idEnd && digitVal[key[i]] == 0xff {
			return "", ErrFormat
		}
	}
	if sum, ok := decodeSum(key[sumStart:]); !ok || sum != crcString(key[:sumStart]) {
		return "", ErrChecksum
	}
	return key[idStart:idEnd], nil
}

// ValidID reports whether id has the shape of a key ID.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if digitVal[id[i]] == 0xff {
			return false
		}
	}
	return true
}

// crcString is CRC-32 (IEEE) of s, computed over the string directly: the
// []byte conversion crc32.ChecksumIEEE needs would allocate on every request.
func crcString(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}

// decodeSum reads 6 base62 digits; values past 32 bits are invalid.
func decodeSum(s string) (uint32, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		d := digitVal[s[i]]
		if d == 0xff {
			return 0, false
		}
		v = v*62 + uint64(d)
	}
	return uint32(v), v <= 0xffffffff
}

func encodeSum(b *[SumLen]byte, v uint32) {
	for i := SumLen - 1; i >= 0; i-- {
		b[i] = alphabet[v%62]
		v /= 62
	}
}

// generate builds a new key from the random source r.
func generate(r io.Reader) (key, id string, err error) {
	var b [KeyLen]byte
	copy(b[:], Prefix)
	if err := randomDigits(r, b[idStart:idEnd]); err != nil {
		return "", "", err
	}
	b[idEnd] = '_'
	if err := randomDigits(r, b[secStart:sumStart]); err != nil {
		return "", "", err
	}
	var sum [SumLen]byte
	encodeSum(&sum, crc32.ChecksumIEEE(b[:sumStart]))
	copy(b[sumStart:], sum[:])
	key = string(b[:])
	return key, key[idStart:idEnd], nil
}

// randomDigits fills dst with uniformly random base62 digits, by rejection
// sampling so that no digit is more likely than another.
func randomDigits(r io.Reader, dst []byte) error {
	var buf [64]byte
	n := 0
	for n < len(dst) {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return err
		}
		for _, c := range buf {
			if c >= maxUnbias {
				continue
			}
			dst[n] = alphabet[c%62]
			n++
			if n == len(dst) {
				break
			}
		}
	}
	return nil
}

// LooksLikeKey reports whether s contains something shaped like the start of
// a Gatehouse key ("ghk_" and a 16-digit ID followed by "_"). It is broader
// than Parse on purpose: a truncated or mistyped key in a URL is still a leak.
func LooksLikeKey(s string) bool {
	for {
		i := indexPrefix(s)
		if i < 0 {
			return false
		}
		rest := s[i+len(Prefix):]
		if len(rest) > IDLen && ValidID(rest[:IDLen]) && rest[IDLen] == '_' {
			return true
		}
		s = rest
	}
}

func indexPrefix(s string) int {
	for i := 0; i+len(Prefix) <= len(s); i++ {
		if s[i] == 'g' && s[i:i+len(Prefix)] == Prefix {
			return i
		}
	}
	return -1
}
