package gateway

import (
	"crypto/rand"
	"encoding/hex"
)

// maxRequestIDLen bounds an accepted client request ID.
const maxRequestIDLen = 64

// validRequestID accepts IDs a log can carry safely: 8-64 characters of
// letters, digits, '-', '_' and '.'. Anything else (newlines for log
// injection, quotes, huge values) is replaced by a generated ID.
func validRequestID(s string) bool {
	if len(s) < 8 || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// newRequestID returns 128 random bits in hex, with one allocation.
func newRequestID() string {
	var b [16]byte
	var out [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	hex.Encode(out[:], b[:])
	return string(out[:])
}
