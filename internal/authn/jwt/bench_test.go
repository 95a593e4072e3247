package jwt

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

func benchAuthenticator(b *testing.B, opts ...Option) (*Authenticator, string) {
	p := standardIdP(b)
	clk := newClock()
	a := mustAuthenticator(b, startVerifier(b, p, clk, issuerConfig(p), opts...))
	tok := mint(b, p.url(), clk.Now(), tokenSpec{})
	if _, err := a.Authenticate(bearerRequest(tok)); err != nil {
		b.Fatal(err)
	}
	return a, tok
}

// BenchmarkRS256NoCache: the full Authenticate path with a signature
// verification on every request.
func BenchmarkRS256NoCache(b *testing.B) {
	a, tok := benchAuthenticator(b, WithTokenCacheSize(0))
	r := bearerRequest(tok)
	before := sigVerifications.Load()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(sigVerifications.Load()-before)/float64(b.N), "sigverify/op")
}

// BenchmarkRS256Cached: the same token answered from the verified-token
// cache (sigverify/op shows no signature is checked).
func BenchmarkRS256Cached(b *testing.B) {
	a, tok := benchAuthenticator(b)
	r := bearerRequest(tok)
	before := sigVerifications.Load()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(sigVerifications.Load()-before)/float64(b.N), "sigverify/op")
}

// BenchmarkRS256CachedParallel: cache hits from all cores (lock contention).
func BenchmarkRS256CachedParallel(b *testing.B) {
	a, tok := benchAuthenticator(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := bearerRequest(tok)
		for pb.Next() {
			if _, err := a.Authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRS256RawCrypto is the floor: SHA-256 and rsa.VerifyPKCS1v15.
func BenchmarkRS256RawCrypto(b *testing.B) {
	testKeys(b)
	tok := mint(b, "https://idp", newClock().Now(), tokenSpec{})
	i := strings.LastIndexByte(tok, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	input := tok[:i]
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256([]byte(input))
		if err := rsa.VerifyPKCS1v15(&rsaKey.PublicKey, crypto.SHA256, h[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkES256NoCache(b *testing.B) {
	p := standardIdP(b)
	clk := newClock()
	a := mustAuthenticator(b, startVerifier(b, p, clk, issuerConfig(p), WithTokenCacheSize(0)))
	r := bearerRequest(mint(b, p.url(), clk.Now(), tokenSpec{alg: "ES256", kid: "ec-1", key: ecKey}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}
