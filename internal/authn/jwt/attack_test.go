package jwt

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAttackerTable: every row is an attack that must be refused with a
// Failure and the stated reason, next to a benign twin that must pass.
func TestAttackerTable(t *testing.T) {
	p := standardIdP(t)
	clk := newClock()
	v := startVerifier(t, p, clk, issuerConfig(p)) // RS256, ES256, PS256, EdDSA
	a := mustAuthenticator(t, v)
	iss, now := p.url(), clk.Now()

	// A loopback server the attacker controls: jku/x5u point at it, and it
	// must never be contacted.
	var attackerHits atomic.Int64
	evil := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer evil.Close()

	valid := func(s tokenSpec) string { return mint(t, iss, now, s) }
	rs := valid(tokenSpec{})
	es := valid(tokenSpec{alg: "ES256", kid: "ec-1", key: ecKey})
	pubPEM := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})
	attackerJWK := publicJWK(&attackerEC.PublicKey, "ec-1", "ES256")
	attackerCert := func() string {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "idp"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &attackerEC.PublicKey, attackerEC)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(der)
	}()
	withSig := func(tok string, sig []byte) string {
		return tok[:strings.LastIndexByte(tok, '.')+1] + base64.RawURLEncoding.EncodeToString(sig)
	}
	body := func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')] }

	rows := []struct {
		name     string
		attack   string
		twin     string
		want     string
		wantAuth string // when the Authenticator answers differently from Verify
	}{
		{"alg none", valid(tokenSpec{alg: "none"}), rs, ReasonAlgNotAllowed, ""},
		{"alg None", valid(tokenSpec{alg: "None"}), rs, ReasonAlgNotAllowed, ""},
		{"alg NONE", valid(tokenSpec{alg: "NONE"}), rs, ReasonAlgNotAllowed, ""},
		{"alg none with a signature", withSig(valid(tokenSpec{alg: "none"}), []byte("sig")), rs, ReasonAlgNotAllowed, ""},
		{"HS256 keyed with the RSA public key (PKIX PEM)", valid(tokenSpec{alg: "HS256", key: pubPEM}), rs, ReasonAlgNotAllowed, ""},
		{"HS256 keyed with the RSA public key (PKCS#1 PEM)", valid(tokenSpec{alg: "HS256", key: pkcs1PEM}), rs, ReasonAlgNotAllowed, ""},
		{"HS512 keyed with the RSA modulus", valid(tokenSpec{alg: "HS512", key: rsaKey.N.Bytes()}), rs, ReasonAlgNotAllowed, ""},
		{"ES256 with r = s = 0", withSig(es, make([]byte, 64)), es, ReasonBadSignature, ""},
		{"ES256 with r = s = 0, short", withSig(es, []byte{0, 0}), es, ReasonBadSignature, ""},
		{"stripped signature", body(rs) + ".", rs, ReasonBadSignature, ""},
		{"signature of another token", body(valid(tokenSpec{claims: map[string]any{"scope": "admin"}})) + rs[strings.LastIndexByte(rs, '.'):], rs, ReasonBadSignature, ""},
		{"signed by an attacker's key under our kid", valid(tokenSpec{key: attackerRSA}), rs, ReasonBadSignature, ""},
		{"embedded jwk", valid(tokenSpec{alg: "ES256", kid: "ec-1", key: attackerEC, header: map[string]any{"jwk": attackerJWK}}), es, ReasonEmbeddedKey, ""},
		{"jku to another server", valid(tokenSpec{alg: "ES256", kid: "evil", key: attackerEC, header: map[string]any{"jku": evil.URL + "/jwks.json"}}), es, ReasonEmbeddedKey, ""},
		{"x5u to another server", valid(tokenSpec{alg: "ES256", kid: "evil", key: attackerEC, header: map[string]any{"x5u": evil.URL + "/cert.pem"}}), es, ReasonEmbeddedKey, ""},
		{"x5c chain", valid(tokenSpec{alg: "ES256", kid: "-", key: attackerEC, header: map[string]any{"x5c": []string{attackerCert}}}), es, ReasonEmbeddedKey, ""},
		{"jku with our own key's signature", valid(tokenSpec{header: map[string]any{"jku": p.url() + "/jwks.json"}}), rs, ReasonEmbeddedKey, ""},
		{"kid path traversal", valid(tokenSpec{kid: "../../etc/passwd", key: attackerRSA}), rs, ReasonUnknownKID, ""},
		{"kid SQL injection", valid(tokenSpec{kid: "' OR 1=1--", key: attackerRSA}), rs, ReasonUnknownKID, ""},
		{"kid not a string", valid(tokenSpec{header: map[string]any{"kid": 1}}), rs, ReasonMalformed, ""},
		{"kid oversized", valid(tokenSpec{kid: strings.Repeat("k", 300)}), rs, ReasonMalformed, ""},
		{"ES256 header on an RSA kid", valid(tokenSpec{alg: "ES256", kid: "rsa-1", key: ecKey}), es, ReasonAlgNotAllowed, ""},
		{"PS256 on a key pinned to RS256", valid(tokenSpec{alg: "PS256", kid: "rsa-1"}), rs, ReasonAlgNotAllowed, ""},
		{"alg off the allow-list (RS512)", valid(tokenSpec{alg: "RS512", kid: "rsa-any", key: rsaKey2}), valid(tokenSpec{alg: "PS256", kid: "rsa-any", key: rsaKey2}), ReasonAlgNotAllowed, ""},
		{"unknown crit", valid(tokenSpec{header: map[string]any{"crit": []string{"x-tenant"}, "x-tenant": "a"}}), rs, ReasonCritUnsupported, ""},
		{"crit naming a registered header", valid(tokenSpec{header: map[string]any{"crit": []string{"alg"}}}), rs, ReasonCritUnsupported, ""},
		{"crit naming an absent header", valid(tokenSpec{header: map[string]any{"crit": []string{"x-absent"}}}), rs, ReasonCritUnsupported, ""},
		{"crit not an array", valid(tokenSpec{header: map[string]any{"crit": "x-tenant", "x-tenant": "a"}}), rs, ReasonCritUnsupported, ""},
		{"crit empty", valid(tokenSpec{header: map[string]any{"crit": []string{}}}), rs, ReasonCritUnsupported, ""},
		{"unencoded payload (b64 false)", valid(tokenSpec{header: map[string]any{"b64": false, "crit": []string{"b64"}}}), rs, ReasonCritUnsupported, ""},
		{"DPoP proof as access token", valid(tokenSpec{header: map[string]any{"typ": "dpop+jwt"}}), valid(tokenSpec{header: map[string]any{"typ": "at+jwt"}}), ReasonMalformed, ""},
		{"expired", valid(tokenSpec{claims: map[string]any{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix()}}), rs, ReasonExpired, ""},
		{"not yet valid", valid(tokenSpec{claims: map[string]any{"nbf": now.Add(time.Hour).Unix()}}), valid(tokenSpec{claims: map[string]any{"nbf": now.Unix()}}), ReasonNotYetValid, ""},
		{"missing exp", valid(tokenSpec{drop: []string{"exp"}}), rs, ReasonMissingClaim, ""},
		{"lifetime over policy", valid(tokenSpec{claims: map[string]any{"exp": now.Add(30 * 24 * time.Hour).Unix()}}), valid(tokenSpec{claims: map[string]any{"exp": now.Add(23 * time.Hour).Unix()}}), ReasonLifetime, ""},
		{"lifetime hidden by omitting iat", valid(tokenSpec{claims: map[string]any{"exp": now.Add(30 * 24 * time.Hour).Unix()}, drop: []string{"iat"}}), rs, ReasonMissingClaim, ""},
		{"wrong iss", mint(t, "https://evil.example", now, tokenSpec{}), rs, ReasonBadIssuer, "no_credential"},
		{"wrong aud", valid(tokenSpec{claims: map[string]any{"aud": "payments-api"}}), rs, ReasonBadAudience, ""},
		{"header not JSON", "bm90IGpzb24." + strings.SplitN(rs, ".", 2)[1], rs, ReasonMalformed, ""},
		{"padded base64", strings.Replace(rs, ".", "=.", 1), rs, ReasonMalformed, "no_credential"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), row.attack)
			if got := reasonOf(err); got != row.want {
				t.Errorf("Verify: reason = %q, want %q", got, row.want)
			}
			wantAuth := row.wantAuth
			if wantAuth == "" {
				wantAuth = row.want
			}
			_, err = a.Authenticate(bearerRequest(row.attack))
			if got := reasonOf(err); got != wantAuth {
				t.Errorf("Authenticate: reason = %q, want %q", got, wantAuth)
			}
			if _, err := a.Authenticate(bearerRequest(row.twin)); err != nil {
				t.Errorf("benign twin refused: %v", err)
			}
		})
	}
	if n := attackerHits.Load(); n != 0 {
		t.Fatalf("the attacker's server got %d requests", n)
	}

	// Unknown kid after a real rotation: refused while unpublished,
	// accepted once the IdP publishes it (one on-demand fetch).
	t.Run("unknown kid after a real rotation", func(t *testing.T) {
		clk.Advance(11 * time.Second) // past the earlier rows' on-demand fetch
		testKeys(t)
		rotated := mint(t, iss, clk.Now(), tokenSpec{kid: "rsa-2027", key: attackerRSA})
		if _, err := a.Authenticate(bearerRequest(rotated)); reasonOf(err) != ReasonUnknownKID {
			t.Fatalf("unpublished kid: %v", err)
		}
		p.setKeys(publicJWK(&rsaKey.PublicKey, "rsa-1", "RS256"), publicJWK(&attackerRSA.PublicKey, "rsa-2027", "RS256"))
		clk.Advance(11 * time.Second)
		if _, err := a.Authenticate(bearerRequest(rotated)); err != nil {
			t.Fatalf("rotated key refused once published: %v", err)
		}
	})
}

// HS256 can never be configured, so the confusion attack has no way in.
func TestHMACNeverConfigurable(t *testing.T) {
	p := standardIdP(t)
	for _, alg := range []string{"HS256", "HS384", "HS512", "none"} {
		cfg := issuerConfig(p)
		cfg.Algorithms = []string{alg}
		if _, err := New(cfg); err == nil {
			t.Fatalf("%s accepted in the allow-list", alg)
		}
	}
}
