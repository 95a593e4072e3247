package jwt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// wycheproofFile finds shared/testdata/wycheproof/<name>: shared/ sits
// beside the project root (the folder holding go.mod).
func wycheproofFile(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("Wycheproof vectors: project root (go.mod) not found")
		}
		dir = parent
	}
	path := filepath.Join(filepath.Dir(dir), "shared", "testdata", "wycheproof", name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("Wycheproof vectors absent (%s): shared/testdata is not beside the project root", path)
	}
	return path
}

type wycheproofFileJSON struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		Comment string          `json:"comment"`
		Public  json.RawMessage `json:"public"`
		Private json.RawMessage `json:"private"`
		Tests   []struct {
			TcID    int             `json:"tcId"`
			Comment string          `json:"comment"`
			JWS     json.RawMessage `json:"jws"`
			Result  string          `json:"result"`
			Flags   []string        `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func loadWycheproof(t *testing.T) *wycheproofFileJSON {
	t.Helper()
	b, err := os.ReadFile(wycheproofFile(t, "json_web_signature_test.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofFileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// TestWycheproofSignatures runs every JWS vector through the signature
// layer (verifyJWS: shape, header rules, key selection, signature) with the
// group's public key as the issuer's only key and every supported
// algorithm allowed. Every invalid vector must be refused. Every valid one
// must verify, except where Gatehouse is deliberately stricter than the
// vectors: a key whose JWK pins an alg is used for that alg only, and
// symmetric (HS*) groups have no public key and are never honoured.
func TestWycheproofSignatures(t *testing.T) {
	f := loadWycheproof(t)
	allowed := map[string]bool{}
	for _, a := range DefaultAlgorithms {
		allowed[a] = true
	}
	var invalidRefused, validAccepted, validPolicy, hmacRefused, total int
	var policyNotes []string
	for gi, g := range f.TestGroups {
		var ks *keySet
		var keyAlg string
		if g.Public != nil {
			var pub struct {
				Alg string `json:"alg"`
			}
			_ = json.Unmarshal(g.Public, &pub)
			keyAlg = pub.Alg
			doc := []byte(`{"keys":[` + string(g.Public) + `]}`)
			ks, _, _ = parseJWKS(doc, time.Now(), time.Hour)
		}
		if ks == nil {
			ks = &keySet{byKID: map[string][]*verificationKey{}, byFP: map[[32]byte]bool{}}
		}
		for _, tc := range g.Tests {
			total++
			name := fmt.Sprintf("group%d-%s/tc%d-%s", gi, g.Comment, tc.TcID, tc.Comment)
			var token string
			if err := json.Unmarshal(tc.JWS, &token); err != nil {
				// JSON serialisation: Gatehouse accepts compact JWS only.
				if tc.Result == "valid" {
					t.Errorf("%s: valid vector in JSON serialisation", name)
				}
				invalidRefused++
				continue
			}
			_, _, fail := verifyJWS(token, ks, allowed)
			alg := headerAlg(token)
			switch {
			case g.Public == nil: // HMAC groups: nothing may pass, valid or not
				if fail == nil {
					t.Errorf("%s: HS token accepted", name)
				}
				hmacRefused++
			case tc.Result == "invalid":
				if fail == nil {
					t.Errorf("%s: invalid vector accepted", name)
				} else {
					invalidRefused++
				}
			case tc.Result == "valid" && fail == nil:
				validAccepted++
			case tc.Result == "valid" && keyAlg != "" && keyAlg != alg:
				validPolicy++
				policyNotes = append(policyNotes, fmt.Sprintf("tc%d (token %s, key pins %s: %s)", tc.TcID, alg, keyAlg, fail.Reason))
			default:
				t.Errorf("%s (%s): valid vector refused: %v", name, tc.Result, fail)
			}
		}
	}
	if total != f.NumberOfTests {
		t.Errorf("ran %d vectors, file has %d", total, f.NumberOfTests)
	}
	t.Logf("Wycheproof JWS: %d vectors: %d invalid refused, %d valid accepted, %d valid refused by key-alg policy, %d HMAC-group vectors refused (HS* never honoured)",
		total, invalidRefused, validAccepted, validPolicy, hmacRefused)
	sort.Strings(policyNotes)
	for _, n := range policyNotes {
		t.Logf("  stricter than the vector: %s", n)
	}
}

// TestWycheproofFullPath uses each asymmetric group's key as a real
// issuer's JWKS over HTTPS: a claims set signed with the group's private
// key passes the whole Authenticator, its tampered twin does not, and no
// vector (their payloads are not claims sets) ever yields a principal.
func TestWycheproofFullPath(t *testing.T) {
	f := loadWycheproof(t)
	clk := newClock()
	var signed, vectors int
	for gi, g := range f.TestGroups {
		if g.Public == nil || g.Private == nil {
			continue
		}
		var pub map[string]any
		_ = json.Unmarshal(g.Public, &pub)
		p := newIdP(t, pub)
		cfg := issuerConfig(p)
		cfg.Algorithms = DefaultAlgorithms
		v := startVerifier(t, p, clk, cfg)
		a := mustAuthenticator(t, v)
		for _, tc := range g.Tests {
			var token string
			if json.Unmarshal(tc.JWS, &token) != nil {
				continue
			}
			vectors++
			if pr, err := a.Authenticate(bearerRequest(token)); err == nil || pr != nil {
				t.Errorf("group %d tc%d: vector yielded a principal", gi, tc.TcID)
			}
		}
		alg, _ := pub["alg"].(string)
		priv := privateFromJWK(t, g.Private)
		if alg == "" || priv == nil || v.keys.current() == nil {
			continue // encryption-only keys, or a key alg Gatehouse does not know
		}
		kid, _ := pub["kid"].(string)
		if kid == "" {
			kid = "-"
		}
		tok := mint(t, p.url(), clk.Now(), tokenSpec{alg: alg, kid: kid, key: priv})
		if _, err := a.Authenticate(bearerRequest(tok)); err != nil {
			t.Errorf("group %d (%s): token signed with the group key refused: %v", gi, alg, err)
		}
		dot := strings.LastIndexByte(tok, '.')
		sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		sig[len(sig)/2] ^= 0x01
		tampered := tok[:dot+1] + base64.RawURLEncoding.EncodeToString(sig)
		if _, err := a.Authenticate(bearerRequest(tampered)); reasonOf(err) != ReasonBadSignature {
			t.Errorf("group %d (%s): tampered token: %v", gi, alg, err)
		}
		signed++
	}
	t.Logf("Wycheproof full path: %d vectors refused through the Authenticator; %d group keys served as JWKS verified a real token and refused its tampered twin", vectors, signed)
}

func headerAlg(token string) string {
	h, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return ""
	}
	var hd struct {
		Alg string `json:"alg"`
	}
	_ = json.Unmarshal(b, &hd)
	return hd.Alg
}

// privateFromJWK parses an RSA or EC private JWK (test vectors only).
func privateFromJWK(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	var j map[string]string
	var loose map[string]any
	_ = json.Unmarshal(raw, &loose)
	j = map[string]string{}
	for k, v := range loose {
		if s, ok := v.(string); ok {
			j[k] = s
		}
	}
	num := func(k string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(j[k], "="))
		if err != nil {
			t.Fatalf("jwk %s: %v", k, err)
		}
		return new(big.Int).SetBytes(b)
	}
	kty := j["kty"]
	if kty == "" { // some vectors omit kty: infer it
		if j["n"] != "" {
			kty = "RSA"
		} else if j["crv"] != "" {
			kty = "EC"
		}
	}
	switch kty {
	case "RSA":
		k := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: num("n"), E: int(num("e").Int64())},
			D:         num("d"),
			Primes:    []*big.Int{num("p"), num("q")},
		}
		k.Precompute()
		if err := k.Validate(); err != nil {
			t.Fatalf("rsa private jwk: %v", err)
		}
		return k
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[j["crv"]]
		size := (curve.Params().BitSize + 7) / 8
		d := num("d").FillBytes(make([]byte, size))
		k, err := ecdsa.ParseRawPrivateKey(curve, d)
		if err != nil {
			t.Fatalf("ec private jwk: %v", err)
		}
		return k
	}
	return nil
}
