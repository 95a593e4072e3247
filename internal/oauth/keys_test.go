package oauth

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKeyRingRotation(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			now := time.Unix(1_800_000_000, 0)
			clock := func() time.Time { return now }
			k, err := NewKeyRing(dir, alg, 24*time.Hour, 2*time.Hour, clock)
			if err != nil {
				t.Fatal(err)
			}
			first, _ := k.Active()
			if st, _ := os.Stat(filepath.Join(dir, first.ID+".pem")); st.Mode().Perm() != 0o600 {
				t.Fatalf("key mode %v", st.Mode().Perm())
			}
			now = now.Add(23 * time.Hour)
			if a, _ := k.Active(); a.ID != first.ID {
				t.Fatal("rotated too early")
			}
			now = now.Add(2 * time.Hour) // 25h: rotate
			second, _ := k.Active()
			if second.ID == first.ID {
				t.Fatal("did not rotate")
			}
			if ids := kids(t, k); len(ids) != 2 {
				t.Fatalf("overlap: want both keys published, got %v", ids)
			}
			now = now.Add(2 * time.Hour) // first key is 27h old > 24h+2h
			if ids := kids(t, k); len(ids) != 1 || ids[0] != second.ID {
				t.Fatalf("after overlap: %v", ids)
			}
			// A second ring over the same folder (another replica) sees the keys.
			k2, err := NewKeyRing(dir, alg, 24*time.Hour, 2*time.Hour, clock)
			if err != nil {
				t.Fatal(err)
			}
			if a, _ := k2.Active(); a.ID != second.ID {
				t.Fatalf("replica signs with %s, want %s", a.ID, second.ID)
			}
		})
	}
}

func kids(t *testing.T, k *KeyRing) []string {
	t.Helper()
	b, err := k.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct{ Keys []JWK }
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range set.Keys {
		if _, err := ParseJWK(j); err != nil {
			t.Fatalf("published JWK does not parse: %v", err)
		}
		if j.Use != "sig" || j.Alg == "" {
			t.Fatalf("JWK %+v", j)
		}
		ids = append(ids, j.Kid)
	}
	return ids
}

func TestKeyRingRefusesLooseKeyFile(t *testing.T) {
	dir := t.TempDir()
	k, err := NewKeyRing(dir, "ES256", time.Hour, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := k.Active()
	os.Chmod(filepath.Join(dir, a.ID+".pem"), 0o644)
	if _, err := NewKeyRing(dir, "ES256", time.Hour, time.Hour, nil); err == nil {
		t.Fatal("world-readable signing key accepted")
	}
}

func TestParseJWKRejectsOffCurve(t *testing.T) {
	j := JWK{Kty: "EC", Crv: "P-256", X: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Y: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"}
	if _, err := ParseJWK(j); err == nil {
		t.Fatal("off-curve point accepted")
	}
}
