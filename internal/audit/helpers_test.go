package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

func hexString(h [32]byte) string         { return hex.EncodeToString(h[:]) }
func sha256Sum(b []byte) [32]byte         { return sha256.Sum256(b) }
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
