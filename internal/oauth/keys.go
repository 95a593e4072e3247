// Package oauth is Gatehouse's own OAuth 2.0 authorization server for
// partners: the client-credentials token endpoint (RFC 6749 §4.4) and the
// JWKS its tokens verify against, with signing keys that rotate.
package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SigningKey is one key of the ring.
type SigningKey struct {
	ID        string
	Alg       string // ES256 or EdDSA
	Created   time.Time
	Private   crypto.Signer
	PublicKey crypto.PublicKey
}

// KeyRing holds the token signing keys in a folder, one PKCS#8 PEM file per
// key named <created-unix>-<random>.pem. The newest key signs until it is
// RotateEvery old; older keys keep verifying for Overlap after that, so
// tokens signed just before a rotation stay valid until they expire.
// Replicas that share the folder (a mounted secret) share the ring.
type KeyRing struct {
	dir         string
	alg         string
	rotateEvery time.Duration
	overlap     time.Duration
	now         func() time.Time

	mu   sync.Mutex
	keys []*SigningKey // newest first
}

// NewKeyRing loads (or starts) the ring in dir.
func NewKeyRing(dir, alg string, rotateEvery, overlap time.Duration, now func() time.Time) (*KeyRing, error) {
	if alg != "ES256" && alg != "EdDSA" {
		return nil, fmt.Errorf("unsupported signing algorithm %q", alg)
	}
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key folder: %w", err)
	}
	k := &KeyRing{dir: dir, alg: alg, rotateEvery: rotateEvery, overlap: overlap, now: now}
	if err := k.load(); err != nil {
		return nil, err
	}
	if _, err := k.Active(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *KeyRing) load() error {
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("read key folder: %w", err)
	}
	var keys []*SigningKey
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".pem") {
			continue
		}
		sk, err := readKey(filepath.Join(k.dir, name))
		if err != nil {
			return err
		}
		keys = append(keys, sk)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Created.After(keys[j].Created) })
	k.keys = keys
	return nil
}

func readKey(path string) (*SigningKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PKCS#8 PEM private key", path)
	}
	pk, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	id := strings.TrimSuffix(filepath.Base(path), ".pem")
	ts, _, ok := strings.Cut(id, "-")
	secs, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil {
		return nil, fmt.Errorf("signing key %s: name must be <unix-time>-<random>.pem", path)
	}
	sk := &SigningKey{ID: id, Created: time.Unix(secs, 0)}
	switch p := pk.(type) {
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("signing key %s: only P-256 is supported", path)
		}
		sk.Alg, sk.Private, sk.PublicKey = "ES256", p, &p.PublicKey
	case ed25519.PrivateKey:
		sk.Alg, sk.Private, sk.PublicKey = "EdDSA", p, p.Public()
	default:
		return nil, fmt.Errorf("signing key %s: unsupported key type %T", path, pk)
	}
	return sk, nil
}

// Active returns the key to sign with, rotating first when the newest key
// of the configured algorithm is older than RotateEvery.
func (k *KeyRing) Active() (*SigningKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	for _, sk := range k.keys {
		if sk.Alg == k.alg && now.Sub(sk.Created) < k.rotateEvery && !sk.Created.After(now.Add(time.Minute)) {
			return sk, nil
		}
	}
	sk, err := k.generate(now)
	if err != nil {
		return nil, err
	}
	k.keys = append([]*SigningKey{sk}, k.keys...)
	return sk, nil
}

func (k *KeyRing) generate(now time.Time) (*SigningKey, error) {
	var priv crypto.Signer
	var err error
	if k.alg == "ES256" {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal signing key: %w", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	id := fmt.Sprintf("%d-%s", now.Unix(), hex.EncodeToString(rnd[:]))
	path := filepath.Join(k.dir, id+".pem")
	// O_EXCL: never overwrite a key another replica just wrote.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		f.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return &SigningKey{ID: id, Alg: k.alg, Created: time.Unix(now.Unix(), 0), Private: priv, PublicKey: priv.Public()}, nil
}

// Verifying returns the keys whose tokens may still be alive: the active
// key and every key retired less than Overlap ago.
func (k *KeyRing) Verifying() []*SigningKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	var out []*SigningKey
	for _, sk := range k.keys {
		if now.Sub(sk.Created) < k.rotateEvery+k.overlap {
			out = append(out, sk)
		}
	}
	return out
}

// Reload re-reads the folder, picking up keys other replicas generated.
func (k *KeyRing) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.load()
}

// JWK is a public JSON Web Key (RFC 7517) as published in the JWKS.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS returns the JSON Web Key Set of the verifying keys.
func (k *KeyRing) JWKS() ([]byte, error) {
	var set struct {
		Keys []JWK `json:"keys"`
	}
	set.Keys = []JWK{}
	for _, sk := range k.Verifying() {
		j, err := publicJWK(sk)
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, j)
	}
	return json.Marshal(set)
}

func publicJWK(sk *SigningKey) (JWK, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch pub := sk.PublicKey.(type) {
	case *ecdsa.PublicKey:
		ecdh, err := pub.ECDH()
		if err != nil {
			return JWK{}, err
		}
		raw := ecdh.Bytes() // 0x04 || X || Y, fixed-size coordinates
		return JWK{Kty: "EC", Crv: "P-256", X: b64(raw[1:33]), Y: b64(raw[33:65]), Kid: sk.ID, Use: "sig", Alg: "ES256"}, nil
	case ed25519.PublicKey:
		return JWK{Kty: "OKP", Crv: "Ed25519", X: b64(pub), Kid: sk.ID, Use: "sig", Alg: "EdDSA"}, nil
	}
	return JWK{}, errors.New("unsupported public key")
}

// ParseJWK turns a published JWK back into a public key (used by tests and
// by the gateway's own verifier).
func ParseJWK(j JWK) (crypto.PublicKey, error) {
	dec := base64.RawURLEncoding.DecodeString
	switch {
	case j.Kty == "EC" && j.Crv == "P-256":
		x, err1 := dec(j.X)
		y, err2 := dec(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("bad EC key coordinates")
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if _, err := pub.ECDH(); err != nil { // rejects points off the curve
			return nil, errors.New("EC point not on curve")
		}
		return pub, nil
	case j.Kty == "OKP" && j.Crv == "Ed25519":
		x, err := dec(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("unsupported JWK kty %q crv %q", j.Kty, j.Crv)
}
