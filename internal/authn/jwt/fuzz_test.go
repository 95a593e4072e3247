package jwt

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzParseToken feeds arbitrary Bearer values to the Authenticator: it
// must never panic, and it must accept nothing but the validly signed
// seeds (any other accepted byte string would be a forgery, since strict
// base64url leaves each signature one encoding).
func FuzzParseToken(f *testing.F) {
	p := standardIdP(f)
	clk := newClock()
	a := mustAuthenticator(f, startVerifier(f, p, clk, issuerConfig(p)))
	now := clk.Now()
	valid := map[string]bool{}
	for _, s := range []tokenSpec{
		{},
		{alg: "ES256", kid: "ec-1", key: ecKey},
		{alg: "EdDSA", kid: "ed-1", key: edKey},
		{alg: "PS256", kid: "rsa-any", key: rsaKey2},
	} {
		tok := mint(f, p.url(), now, s)
		valid[tok] = true
		f.Add(tok)
		f.Add(tok[:strings.LastIndexByte(tok, '.')+1])
	}
	for _, s := range []string{
		"", ".", "..", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.",
		mint(f, p.url(), now, tokenSpec{alg: "none"}),
		mint(f, p.url(), now, tokenSpec{alg: "HS256", key: []byte("k")}),
		mint(f, p.url(), now, tokenSpec{header: map[string]any{"crit": []string{"x"}, "x": 1}}),
		mint(f, p.url(), now, tokenSpec{kid: "../../etc/passwd"}),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		r := httptest.NewRequest(http.MethodGet, "https://api.example.com/", nil)
		r.Header["Authorization"] = []string{"Bearer " + token}
		pr, err := a.Authenticate(r)
		if err == nil {
			if pr == nil {
				t.Fatal("nil principal without error")
			}
			if !valid[strings.TrimSpace(token)] {
				t.Fatalf("accepted a token that was never signed: %q", token)
			}
		}
	})
}
