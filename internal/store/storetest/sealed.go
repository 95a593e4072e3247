package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/store"
)

// SealedHarness lets the encryption-at-rest suite open stores with a data
// key ring and look at what the database really holds.
type SealedHarness struct {
	// Open returns a new, empty store sealing with k (nil: no encryption).
	Open func(t *testing.T, k *seal.KeyRing) store.Store
	// Reopen opens the data of s again with another ring, as a restart
	// with a changed config does. The result is closed by the harness.
	Reopen func(t *testing.T, s store.Store, k *seal.KeyRing) store.Store
	// Raw returns every value of table.column as stored, bypassing sealing.
	Raw func(t *testing.T, s store.Store, table, column string) []string
}

// TestKeyRing builds a ring from fixed test keys; the first is active.
func TestKeyRing(t testing.TB, seeds ...byte) *seal.KeyRing {
	t.Helper()
	var keys [][]byte
	for _, b := range seeds {
		keys = append(keys, bytes.Repeat([]byte{b}, seal.KeySize))
	}
	k, err := seal.NewKeyRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// RunSealed runs the encryption-at-rest suite: the whole conformance suite
// with a key ring, then checks that no sensitive value is stored in
// plaintext, that a missing or wrong key fails loudly, and that rotation
// re-encrypts everything in place, idempotently, beside live writes.
func RunSealed(t *testing.T, h SealedHarness) {
	t.Run("Conformance", func(t *testing.T) {
		ring := TestKeyRing(t, 1)
		Run(t, func(t *testing.T) store.Store { return h.Open(t, ring) })
	})
	t.Run("NoPlaintextAtRest", func(t *testing.T) { t.Parallel(); testNoPlaintext(t, h) })
	t.Run("MissingOrWrongKey", func(t *testing.T) { t.Parallel(); testWrongKey(t, h) })
	t.Run("Rotate", func(t *testing.T) { t.Parallel(); testRotate(t, h) })
	t.Run("RotateBesideWrites", func(t *testing.T) { t.Parallel(); testRotateConcurrent(t, h) })
}

// Plaintexts the sensitive columns get in these tests; none may show in
// the raw columns.
const (
	plainCreator = "alice.admin@corp.example"
	plainIP      = "203.0.113.77"
	plainReason  = "leaked in support ticket 4711"
	plainEmail   = "owner@partner.example"
)

func sensitiveCredential(id string) store.Credential {
	return store.Credential{ID: id, Kind: "apikey", Consumer: "acme-billing", Partner: "acme",
		Hash: []byte("hash-" + id), Scopes: []string{"orders:read"}, CreatedAt: base, CreatedBy: plainCreator,
		Metadata: map[string]string{"contact": plainEmail, "phone": "+47 22 00 00 00"}}
}

// fill writes every kind of sensitive value through s.
func fill(t *testing.T, s store.Store, ids ...string) {
	ctx := ctxT(t)
	for _, id := range ids {
		mustNoErr(t, s.CreateCredential(ctx, sensitiveCredential(id)), "CreateCredential")
		mustNoErr(t, s.TouchCredential(ctx, id, at(time.Minute), plainIP), "TouchCredential")
		mustNoErr(t, s.RevokeCredential(ctx, id, at(time.Hour), plainReason), "RevokeCredential")
		mustNoErr(t, s.AddRevocation(ctx, store.Revocation{Kind: store.RevokeCredential, Subject: id,
			Reason: plainReason, CreatedBy: plainCreator, CreatedAt: base}), "AddRevocation")
	}
}

// checkReadable asserts the API returns the plaintext of every value.
func checkReadable(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	ctx := ctxT(t)
	for _, id := range ids {
		c, err := s.GetCredential(ctx, id)
		mustNoErr(t, err, "GetCredential "+id)
		wantMeta := sensitiveCredential(id).Metadata
		if c.CreatedBy != plainCreator || c.LastUsedIP != plainIP || c.RevokedWhy != plainReason ||
			!maps.Equal(c.Metadata, wantMeta) || string(c.Hash) != "hash-"+id {
			t.Errorf("credential %s read back as %+v", id, c)
		}
	}
	revs, err := s.RevocationsSince(ctx, 0)
	mustNoErr(t, err, "RevocationsSince")
	if len(revs) != len(ids) {
		t.Fatalf("%d revocations, want %d", len(revs), len(ids))
	}
	for _, r := range revs {
		if r.Reason != plainReason || r.CreatedBy != plainCreator {
			t.Errorf("revocation read back as %+v", r)
		}
	}
}

// rawSealed returns every non-empty raw sensitive value of s.
func rawSealed(t *testing.T, h SealedHarness, s store.Store) map[string][]string {
	out := map[string][]string{}
	for _, c := range store.CredentialSealedColumns {
		out["credentials."+c] = nonEmpty(h.Raw(t, s, "credentials", c))
	}
	for _, c := range store.RevocationSealedColumns {
		out["revocations."+c] = nonEmpty(h.Raw(t, s, "revocations", c))
	}
	return out
}

func nonEmpty(vs []string) []string {
	var out []string
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// checkAllSealedUnder asserts every raw sensitive value is sealed under kid
// and shows none of the plaintexts.
func checkAllSealedUnder(t *testing.T, h SealedHarness, s store.Store, kid string, n int) {
	t.Helper()
	for col, vals := range rawSealed(t, h, s) {
		if len(vals) != n {
			t.Errorf("%s holds %d values, want %d", col, len(vals), n)
		}
		for _, v := range vals {
			for _, p := range []string{plainCreator, plainIP, plainReason, plainEmail, "contact", "alice", "203.0.113"} {
				if strings.Contains(v, p) {
					t.Errorf("%s holds plaintext %q: %q", col, p, v)
				}
			}
			if id, _, err := seal.Parse(v); err != nil || id != kid {
				t.Errorf("%s value %.30q: key id %q (%v), want sealed under %s", col, v, id, err, kid)
			}
		}
	}
}

func testNoPlaintext(t *testing.T, h SealedHarness) {
	ring := TestKeyRing(t, 1)
	s := h.Open(t, ring)
	ids := []string{"ck_sealed_a", "ck_sealed_b"}
	fill(t, s, ids...)
	checkReadable(t, s, ids...)
	checkAllSealedUnder(t, h, s, ring.ActiveID(), len(ids))
	// Listing decrypts too, revoked included.
	list, err := s.ListCredentials(ctxT(t), store.CredentialFilter{IncludeRevoked: true})
	mustNoErr(t, err, "ListCredentials")
	if len(list) != 2 || list[0].CreatedBy != plainCreator || list[1].Metadata["contact"] != plainEmail {
		t.Errorf("ListCredentials = %+v", list)
	}
	// Hashes are hashes: stored as given, never sealed.
	if raw := h.Raw(t, s, "credentials", "consumer"); len(raw) != 2 || raw[0] != "acme-billing" {
		t.Errorf("non-sensitive column consumer = %q, want plaintext", raw)
	}
}

func testWrongKey(t *testing.T, h SealedHarness) {
	ring := TestKeyRing(t, 1)
	s := h.Open(t, ring)
	fill(t, s, "ck_wrong")
	ctx := ctxT(t)
	cases := []struct {
		name string
		k    *seal.KeyRing
		want error
	}{
		{"no key", nil, seal.ErrNoKey},
		{"other key", TestKeyRing(t, 2), seal.ErrUnknownKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := h.Reopen(t, s, c.k)
			if _, err := o.GetCredential(ctx, "ck_wrong"); !errors.Is(err, c.want) {
				t.Errorf("GetCredential err = %v, want %v", err, c.want)
			}
			if _, err := o.RevocationsSince(ctx, 0); !errors.Is(err, c.want) {
				t.Errorf("RevocationsSince err = %v, want %v", err, c.want)
			}
			ss, ok := o.(store.SealedStore)
			if !ok {
				t.Fatal("store does not implement store.SealedStore")
			}
			if _, err := store.CheckSealed(ctx, ss, c.k, 1000); !errors.Is(err, c.want) {
				t.Errorf("CheckSealed err = %v, want %v", err, c.want)
			}
		})
	}
	// The right key passes the startup check.
	if n, err := store.CheckSealed(ctx, s.(store.SealedStore), ring, 1000); err != nil || n != 0 {
		t.Errorf("CheckSealed with the right key = %d, %v", n, err)
	}
}

func testRotate(t *testing.T, h SealedHarness) {
	ctx := ctxT(t)
	plain := h.Open(t, nil) // values written before encryption was on
	fill(t, plain, "ck_legacy")
	old := TestKeyRing(t, 1)
	s1 := h.Reopen(t, plain, old)
	fill(t, s1, "ck_old_1", "ck_old_2", "ck_old_3")
	if n, err := store.CheckSealed(ctx, s1.(store.SealedStore), old, 1000); err != nil || n != 6 {
		t.Errorf("CheckSealed = %d plaintext, %v; want the legacy row's 6 values", n, err)
	}

	both := TestKeyRing(t, 2, 1) // new key active, old kept to open
	s2 := h.Reopen(t, plain, both)
	ss := s2.(store.SealedStore)
	st, err := ss.ResealValues(ctx, 2, both.Reseal) // batch of 2: several batches
	mustNoErr(t, err, "ResealValues")
	if st.Visited != 24 || st.Changed != 24 || st.Raced != 0 {
		t.Errorf("first rotation = %+v, want 24 visited and changed", st)
	}
	checkAllSealedUnder(t, h, s2, both.ActiveID(), 4)
	st, err = ss.ResealValues(ctx, 2, both.Reseal)
	mustNoErr(t, err, "ResealValues again")
	if st.Changed != 0 || st.Visited != 24 {
		t.Errorf("second rotation = %+v, want nothing changed (idempotent)", st)
	}
	// The old key can now be dropped.
	s3 := h.Reopen(t, plain, TestKeyRing(t, 2))
	checkReadable(t, s3, "ck_legacy", "ck_old_1", "ck_old_2", "ck_old_3")
}

func testRotateConcurrent(t *testing.T, h SealedHarness) {
	ctx := ctxT(t)
	old := TestKeyRing(t, 1)
	s := h.Open(t, old)
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("ck_live_%02d", i))
	}
	fill(t, s, ids...)
	both := TestKeyRing(t, 2, 1)
	rotator := h.Reopen(t, s, both)

	// A gateway still on the old ring keeps touching credentials while the
	// rotation runs: its writes must win or be re-encrypted, never lost or
	// left unreadable.
	ctx2, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx2.Err() == nil && i < 2000; i++ {
			id := ids[i%len(ids)]
			if err := s.TouchCredential(ctx, id, at(time.Minute+time.Duration(i+1)*time.Second), plainIP); err != nil {
				t.Errorf("TouchCredential: %v", err)
				return
			}
		}
	}()
	_, err := rotator.(store.SealedStore).ResealValues(ctx, 3, both.Reseal)
	stop()
	wg.Wait()
	mustNoErr(t, err, "ResealValues beside writes")
	checkReadable(t, rotator, ids...)
	// The run after the old gateway is gone converges.
	st, err := rotator.(store.SealedStore).ResealValues(ctx, 3, both.Reseal)
	mustNoErr(t, err, "ResealValues after")
	st2, err := rotator.(store.SealedStore).ResealValues(ctx, 3, both.Reseal)
	mustNoErr(t, err, "ResealValues idempotent")
	if st2.Changed != 0 {
		t.Errorf("third run changed %d values (second: %+v)", st2.Changed, st)
	}
	checkAllSealedUnder(t, h, rotator, both.ActiveID(), len(ids))
}
