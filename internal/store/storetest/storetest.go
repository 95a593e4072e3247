// Package storetest is the conformance suite every store.Store
// implementation must pass. Implementations call Run from their own tests,
// so the sqlite and postgres stores are held to one written-down contract
// instead of two drifting sets of tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// Run runs the suite. open must return a new, empty store for each call and
// arrange its cleanup (Close and removal) with t.Cleanup; it is called from
// parallel subtests, so it must be safe for concurrent use.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Ping", []test{{"ok", testPing}}},
		{"Registry", registryTests},
		{"Credentials", credentialTests},
		{"Revocations", revocationTests},
		{"Findings", findingTests},
		{"Incidents", incidentTests},
		{"Alerts", alertTests},
		{"Quotas", quotaTests},
		{"Audit", auditTests},
		{"Context", []test{{"canceled", testCanceled}, {"deadline", testDeadline}}},
		{"Concurrency", concurrencyTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, open(t))
				})
			}
		})
	}
}

type test struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// base is a fixed instant with nanoseconds and a non-UTC zone, so every
// round-trip check also checks truncation to microseconds and UTC.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))

func at(d time.Duration) time.Time { return base.Add(d) }

// want is a time as a store must return it.
func want(t time.Time) time.Time { return store.NormalizeTime(t) }

func ctxT(t *testing.T) context.Context { return t.Context() }

func mustNoErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func equalTime(t *testing.T, field string, got, exp time.Time) {
	t.Helper()
	if !got.Equal(exp) {
		t.Errorf("%s = %v, want %v", field, got, exp)
	}
	if !got.IsZero() && got.Location() != time.UTC {
		t.Errorf("%s location = %v, want UTC", field, got.Location())
	}
}

// ---- Ping

func testPing(t *testing.T, s store.Store) {
	mustNoErr(t, s.Ping(ctxT(t)), "Ping")
}

// ---- Registry

var registryTests = []test{
	{"SaveFirstCreates", testSaveFirstCreates},
	{"SaveSameDigestDedups", testSaveSameDigestDedups},
	{"SaveDedupOnlyAgainstLatest", testSaveDedupOnlyAgainstLatest},
	{"SaveRejects", testSaveRejects},
	{"LatestEmpty", testLatestEmpty},
	{"LatestRoundTrip", testLatestRoundTrip},
	{"LatestZeroCreatedAtFilled", testLatestZeroCreatedAt},
	{"ListAPIsEmpty", testListAPIsEmpty},
	{"ListAPIsOrderedFromLatest", testListAPIsOrderedFromLatest},
}

func api(name, version string) store.APIRecord {
	return store.APIRecord{
		Name: name, Version: version, OwnerTeam: "team-" + name, OwnerContact: name + "@example.com",
		Exposure: "partner", Sensitivity: "confidential", Lifecycle: "active",
		ReviewedOn: "2026-01-02", ReviewedBy: "appsec", Host: "api.example.com",
		BasePath: "/" + name + "/" + version, Upstream: "http://127.0.0.1:9000",
		SpecDigest: "sha-" + name + version, Operations: len(name) + len(version),
	}
}

func snapshot(digest string, apis ...store.APIRecord) store.RegistrySnapshot {
	return store.RegistrySnapshot{Digest: digest, CreatedAt: base, APIs: apis}
}

func testSaveFirstCreates(t *testing.T, s store.Store) {
	id, created, err := s.SaveSnapshot(ctxT(t), snapshot("d1", api("orders", "v1")))
	mustNoErr(t, err, "SaveSnapshot")
	if !created || id <= 0 {
		t.Fatalf("SaveSnapshot = (%d, %v), want (>0, true)", id, created)
	}
}

func testSaveSameDigestDedups(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	id1, _, err := s.SaveSnapshot(ctx, snapshot("d1", api("orders", "v1")))
	mustNoErr(t, err, "SaveSnapshot 1")
	// Same digest, different content and time: the digest alone decides.
	second := snapshot("d1", api("other", "v9"))
	second.CreatedAt = at(time.Hour)
	id2, created, err := s.SaveSnapshot(ctx, second)
	mustNoErr(t, err, "SaveSnapshot 2")
	if created || id2 != id1 {
		t.Fatalf("SaveSnapshot same digest = (%d, %v), want (%d, false)", id2, created, id1)
	}
	latest, err := s.LatestSnapshot(ctx)
	mustNoErr(t, err, "LatestSnapshot")
	if latest.ID != id1 || len(latest.APIs) != 1 || latest.APIs[0].Name != "orders" {
		t.Fatalf("LatestSnapshot = %+v, want the first snapshot unchanged", latest)
	}
	equalTime(t, "CreatedAt", latest.CreatedAt, want(base))
}

func testSaveDedupOnlyAgainstLatest(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	steps := []struct {
		digest      string
		wantCreated bool
	}{
		{"A", true}, {"A", false}, {"B", true}, {"B", false}, {"A", true}, {"A", false},
	}
	var lastID int64
	for i, st := range steps {
		id, created, err := s.SaveSnapshot(ctx, snapshot(st.digest, api("svc", st.digest)))
		mustNoErr(t, err, fmt.Sprintf("step %d SaveSnapshot(%s)", i, st.digest))
		if created != st.wantCreated {
			t.Fatalf("step %d SaveSnapshot(%s) created = %v, want %v", i, st.digest, created, st.wantCreated)
		}
		switch {
		case created && id <= lastID:
			t.Fatalf("step %d: new id %d not after %d", i, id, lastID)
		case !created && id != lastID:
			t.Fatalf("step %d: dedup returned id %d, want latest %d", i, id, lastID)
		}
		lastID = id
		latest, err := s.LatestSnapshot(ctx)
		mustNoErr(t, err, "LatestSnapshot")
		if latest.ID != id || latest.Digest != st.digest {
			t.Fatalf("step %d: latest = (%d, %s), want (%d, %s)", i, latest.ID, latest.Digest, id, st.digest)
		}
	}
}

func testSaveRejects(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	cases := []struct {
		name     string
		snap     store.RegistrySnapshot
		conflict bool
	}{
		{"empty digest", snapshot("", api("a", "v1")), false},
		{"duplicate api", snapshot("dup", api("a", "v1"), api("b", "v1"), api("a", "v1")), true},
	}
	for _, tc := range cases {
		_, created, err := s.SaveSnapshot(ctx, tc.snap)
		if err == nil || created {
			t.Errorf("%s: SaveSnapshot = (created %v, %v), want an error", tc.name, created, err)
			continue
		}
		if tc.conflict && !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: err = %v, want ErrConflict", tc.name, err)
		}
	}
	if _, err := s.LatestSnapshot(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rejected snapshots left a row: LatestSnapshot err = %v", err)
	}
}

func testLatestEmpty(t *testing.T, s store.Store) {
	_, err := s.LatestSnapshot(ctxT(t))
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestSnapshot on empty store: err = %v, want ErrNotFound", err)
	}
}

func testLatestRoundTrip(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, _, err := s.SaveSnapshot(ctx, snapshot("old", api("old", "v1")))
	mustNoErr(t, err, "SaveSnapshot old")
	in := snapshot("new", api("orders", "v2"), api("billing", "v1"), api("orders", "v10"))
	in.APIs[1].ReviewedOn, in.APIs[1].ReviewedBy = "", "" // never reviewed
	in.CreatedAt = at(-24 * time.Hour)                    // older clock than "old": ID, not time, decides
	id, created, err := s.SaveSnapshot(ctx, in)
	mustNoErr(t, err, "SaveSnapshot new")
	if !created {
		t.Fatal("SaveSnapshot new: created = false")
	}
	got, err := s.LatestSnapshot(ctx)
	mustNoErr(t, err, "LatestSnapshot")
	if got.ID != id || got.Digest != "new" {
		t.Fatalf("LatestSnapshot = (%d, %s), want (%d, new)", got.ID, got.Digest, id)
	}
	equalTime(t, "CreatedAt", got.CreatedAt, want(in.CreatedAt))
	wantAPIs := []store.APIRecord{in.APIs[1], in.APIs[2], in.APIs[0]} // version compares as text: v10 < v2
	if !slices.Equal(got.APIs, wantAPIs) {
		t.Fatalf("LatestSnapshot APIs =\n%+v\nwant\n%+v", got.APIs, wantAPIs)
	}
}

func testLatestZeroCreatedAt(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, _, err := s.SaveSnapshot(ctx, store.RegistrySnapshot{Digest: "z"})
	mustNoErr(t, err, "SaveSnapshot")
	got, err := s.LatestSnapshot(ctx)
	mustNoErr(t, err, "LatestSnapshot")
	aboutNow(t, "CreatedAt", got.CreatedAt)
	if len(got.APIs) != 0 {
		t.Fatalf("APIs = %v, want none", got.APIs)
	}
}

func testListAPIsEmpty(t *testing.T, s store.Store) {
	apis, err := s.ListAPIs(ctxT(t))
	mustNoErr(t, err, "ListAPIs")
	if len(apis) != 0 {
		t.Fatalf("ListAPIs on empty store = %v, want none", apis)
	}
}

func testListAPIsOrderedFromLatest(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, _, err := s.SaveSnapshot(ctx, snapshot("1", api("zeta", "v1"), api("gone", "v1")))
	mustNoErr(t, err, "SaveSnapshot 1")
	_, _, err = s.SaveSnapshot(ctx, snapshot("2",
		api("zeta", "v1"), api("alpha", "v2"), api("alpha", "v1"), api("mid", "v1"), api("Mid", "v1"), api("mid", "V1")))
	mustNoErr(t, err, "SaveSnapshot 2")
	apis, err := s.ListAPIs(ctx)
	mustNoErr(t, err, "ListAPIs")
	var got []string
	for _, a := range apis {
		got = append(got, a.Name+"/"+a.Version)
	}
	// Byte order, as sort.Strings: the same in every store whatever the
	// database's collation.
	if exp := []string{"Mid/v1", "alpha/v1", "alpha/v2", "mid/V1", "mid/v1", "zeta/v1"}; !slices.Equal(got, exp) {
		t.Fatalf("ListAPIs = %v, want %v", got, exp)
	}
	if apis[2] != api("alpha", "v2") {
		t.Fatalf("ListAPIs record = %+v, want %+v", apis[2], api("alpha", "v2"))
	}
}

// ---- Credentials

var credentialTests = []test{
	{"CreateGetRoundTrip", testCredentialRoundTrip},
	{"CreateZeroTimesAndEmpty", testCredentialZeroFields},
	{"ZeroTimesDefaultToNow", testCredentialDefaults},
	{"CreateConflict", testCredentialConflict},
	{"CreateEmptyID", testCredentialEmptyID},
	{"GetNotFound", testCredentialNotFound},
	{"ListFiltersAndOrder", testCredentialList},
	{"Revoke", testCredentialRevoke},
	{"RevokeNotFound", testCredentialRevokeNotFound},
	{"TouchMonotonic", testCredentialTouch},
	{"TouchNotFound", testCredentialTouchNotFound},
}

func credential(id, consumer, partner string, created time.Time) store.Credential {
	return store.Credential{
		ID: id, Kind: "apikey", Consumer: consumer, Partner: partner,
		Hash: []byte{0x00, 0xff, 0x10, byte(len(id))}, Scopes: []string{"orders:read", "orders:write"},
		CreatedAt: created, CreatedBy: "admin@example.com",
	}
}

func checkCredential(t *testing.T, got, exp store.Credential) {
	t.Helper()
	if got.ID != exp.ID || got.Kind != exp.Kind || got.Consumer != exp.Consumer ||
		got.Partner != exp.Partner || got.CreatedBy != exp.CreatedBy ||
		got.RevokedWhy != exp.RevokedWhy || got.LastUsedIP != exp.LastUsedIP {
		t.Errorf("credential =\n%+v\nwant\n%+v", got, exp)
	}
	if string(got.Hash) != string(exp.Hash) {
		t.Errorf("Hash = %x, want %x", got.Hash, exp.Hash)
	}
	if !slices.Equal(got.Scopes, exp.Scopes) {
		t.Errorf("Scopes = %q, want %q", got.Scopes, exp.Scopes)
	}
	equalTime(t, "CreatedAt", got.CreatedAt, want(exp.CreatedAt))
	equalTime(t, "ExpiresAt", got.ExpiresAt, want(exp.ExpiresAt))
	equalTime(t, "RevokedAt", got.RevokedAt, want(exp.RevokedAt))
	equalTime(t, "LastUsedAt", got.LastUsedAt, want(exp.LastUsedAt))
}

func testCredentialRoundTrip(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	c := credential("ck_full", "acme-billing", "acme", base)
	c.Scopes = []string{"a:b", `quo"te`, "ünï", "with space"}
	c.ExpiresAt = at(90 * 24 * time.Hour)
	c.RevokedAt = at(time.Hour)
	c.RevokedWhy = "leaked"
	c.LastUsedAt = at(30 * time.Minute)
	c.LastUsedIP = "203.0.113.7"
	mustNoErr(t, s.CreateCredential(ctx, c), "CreateCredential")
	got, err := s.GetCredential(ctx, c.ID)
	mustNoErr(t, err, "GetCredential")
	checkCredential(t, got, c)
}

func testCredentialZeroFields(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	c := store.Credential{ID: "ck_min", Kind: "apikey", Consumer: "solo", CreatedAt: base}
	mustNoErr(t, s.CreateCredential(ctx, c), "CreateCredential")
	got, err := s.GetCredential(ctx, c.ID)
	mustNoErr(t, err, "GetCredential")
	checkCredential(t, got, c)
	for name, tm := range map[string]time.Time{"ExpiresAt": got.ExpiresAt, "RevokedAt": got.RevokedAt, "LastUsedAt": got.LastUsedAt} {
		if !tm.IsZero() {
			t.Errorf("%s = %v, want zero", name, tm)
		}
	}
}

func aboutNow(t *testing.T, field string, got time.Time) {
	t.Helper()
	if d := time.Since(got); d < -time.Minute || d > time.Minute || got.Location() != time.UTC {
		t.Errorf("%s = %v, want about now, in UTC", field, got)
	}
}

func testCredentialDefaults(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustNoErr(t, s.CreateCredential(ctx, store.Credential{ID: "ck_now", Kind: "apikey", Consumer: "c"}), "CreateCredential")
	mustNoErr(t, s.RevokeCredential(ctx, "ck_now", time.Time{}, "now"), "RevokeCredential zero time")
	if err := s.TouchCredential(ctx, "ck_now", time.Time{}, "192.0.2.1"); err == nil {
		t.Error("TouchCredential with zero time succeeded, want an error")
	}
	got, err := s.GetCredential(ctx, "ck_now")
	mustNoErr(t, err, "GetCredential")
	aboutNow(t, "CreatedAt", got.CreatedAt)
	aboutNow(t, "RevokedAt", got.RevokedAt)
	if !got.LastUsedAt.IsZero() {
		t.Errorf("LastUsedAt = %v after a rejected touch, want zero", got.LastUsedAt)
	}
}

func testCredentialConflict(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	first := credential("ck_dup", "first", "", base)
	mustNoErr(t, s.CreateCredential(ctx, first), "CreateCredential first")
	err := s.CreateCredential(ctx, credential("ck_dup", "second", "p", at(time.Hour)))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateCredential duplicate: err = %v, want ErrConflict", err)
	}
	got, err := s.GetCredential(ctx, "ck_dup")
	mustNoErr(t, err, "GetCredential")
	checkCredential(t, got, first)
}

func testCredentialEmptyID(t *testing.T, s store.Store) {
	if err := s.CreateCredential(ctxT(t), credential("", "c", "", base)); err == nil {
		t.Fatal("CreateCredential with empty ID succeeded")
	}
}

func testCredentialNotFound(t *testing.T, s store.Store) {
	_, err := s.GetCredential(ctxT(t), "ck_missing")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCredential unknown: err = %v, want ErrNotFound", err)
	}
}

func testCredentialList(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	// Inserted out of order; c2, c1 and B1 share CreatedAt so ID breaks the
	// tie, in byte order (upper case first) whatever the database collation.
	creds := []store.Credential{
		credential("c3", "billing", "acme", at(3*time.Minute)),
		credential("c2", "billing", "acme", at(time.Minute)),
		credential("c1", "reports", "acme", at(time.Minute)),
		credential("c0", "billing", "globex", at(-time.Minute)),
		credential("c4", "internal", "", at(4*time.Minute)),
		credential("c5", "billing", "acme", at(5*time.Minute)),
		credential("B1", "reports", "acme", want(at(time.Minute)).Add(999*time.Nanosecond)), // same µs
	}
	for _, c := range creds {
		mustNoErr(t, s.CreateCredential(ctx, c), "CreateCredential "+c.ID)
	}
	mustNoErr(t, s.RevokeCredential(ctx, "c5", at(6*time.Minute), "rotated"), "RevokeCredential")

	cases := []struct {
		name string
		f    store.CredentialFilter
		want []string
	}{
		{"all active", store.CredentialFilter{}, []string{"c0", "B1", "c1", "c2", "c3", "c4"}},
		{"all incl revoked", store.CredentialFilter{IncludeRevoked: true}, []string{"c0", "B1", "c1", "c2", "c3", "c4", "c5"}},
		{"consumer", store.CredentialFilter{Consumer: "billing"}, []string{"c0", "c2", "c3"}},
		{"consumer incl revoked", store.CredentialFilter{Consumer: "billing", IncludeRevoked: true}, []string{"c0", "c2", "c3", "c5"}},
		{"partner", store.CredentialFilter{Partner: "acme"}, []string{"B1", "c1", "c2", "c3"}},
		{"consumer and partner", store.CredentialFilter{Consumer: "billing", Partner: "acme"}, []string{"c2", "c3"}},
		{"no match", store.CredentialFilter{Consumer: "nobody"}, nil},
		{"consumer and partner incl revoked", store.CredentialFilter{Consumer: "billing", Partner: "acme", IncludeRevoked: true}, []string{"c2", "c3", "c5"}},
		{"empty partner is no filter", store.CredentialFilter{Consumer: "internal"}, []string{"c4"}},
	}
	for _, tc := range cases {
		got, err := s.ListCredentials(ctx, tc.f)
		if err != nil {
			t.Errorf("%s: ListCredentials: %v", tc.name, err)
			continue
		}
		var ids []string
		for _, c := range got {
			ids = append(ids, c.ID)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("%s: ListCredentials = %v, want %v", tc.name, ids, tc.want)
		}
	}
	// Listed records are complete, not just IDs.
	got, err := s.ListCredentials(ctx, store.CredentialFilter{Partner: "globex"})
	mustNoErr(t, err, "ListCredentials globex")
	if len(got) != 1 {
		t.Fatalf("ListCredentials globex = %d records, want 1", len(got))
	}
	checkCredential(t, got[0], creds[3])
}

func testCredentialRevoke(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	c := credential("ck_rev", "billing", "acme", base)
	mustNoErr(t, s.CreateCredential(ctx, c), "CreateCredential")
	mustNoErr(t, s.RevokeCredential(ctx, c.ID, at(time.Hour), "leaked"), "RevokeCredential first")
	// Revoking again, later or earlier, keeps the first time and reason.
	for _, again := range []time.Time{at(2 * time.Hour), at(-time.Hour)} {
		mustNoErr(t, s.RevokeCredential(ctx, c.ID, again, "again"), "RevokeCredential again")
	}
	got, err := s.GetCredential(ctx, c.ID)
	mustNoErr(t, err, "GetCredential")
	c.RevokedAt, c.RevokedWhy = at(time.Hour), "leaked"
	checkCredential(t, got, c)
}

func testCredentialRevokeNotFound(t *testing.T, s store.Store) {
	err := s.RevokeCredential(ctxT(t), "ck_missing", base, "x")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeCredential unknown: err = %v, want ErrNotFound", err)
	}
}

func testCredentialTouch(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	c := credential("ck_touch", "billing", "", base)
	mustNoErr(t, s.CreateCredential(ctx, c), "CreateCredential")
	t2 := want(at(2 * time.Minute)) // on a microsecond boundary
	t3 := at(3 * time.Minute)
	steps := []struct {
		at     time.Time
		ip     string
		wantAt time.Time
		wantIP string
	}{
		{t2, "198.51.100.2", t2, "198.51.100.2"},
		{at(time.Minute), "198.51.100.1", t2, "198.51.100.2"},               // earlier: ignored
		{t2.Add(999 * time.Nanosecond), "198.51.100.9", t2, "198.51.100.2"}, // same microsecond: ignored
		{t3, "2001:db8::3", t3, "2001:db8::3"},                              // later: wins
		{t3.Add(time.Microsecond), "", t3.Add(time.Microsecond), ""},        // 1µs later still wins
	}
	for i, st := range steps {
		mustNoErr(t, s.TouchCredential(ctx, c.ID, st.at, st.ip), fmt.Sprintf("step %d TouchCredential", i))
		got, err := s.GetCredential(ctx, c.ID)
		mustNoErr(t, err, "GetCredential")
		equalTime(t, fmt.Sprintf("step %d LastUsedAt", i), got.LastUsedAt, want(st.wantAt))
		if got.LastUsedIP != st.wantIP {
			t.Errorf("step %d LastUsedIP = %q, want %q", i, got.LastUsedIP, st.wantIP)
		}
	}
}

func testCredentialTouchNotFound(t *testing.T, s store.Store) {
	err := s.TouchCredential(ctxT(t), "ck_missing", base, "192.0.2.1")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TouchCredential unknown: err = %v, want ErrNotFound", err)
	}
}

// ---- Revocations

var revocationTests = []test{
	{"AddAndIsRevoked", testRevocationAdd},
	{"IsRevokedHonoursExpiry", testRevocationExpiry},
	{"AddDedupKeepsLaterExpiry", testRevocationDedup},
	{"AddRejectsEmpty", testRevocationRejects},
	{"SinceOrderedAndRoundTrip", testRevocationsSince},
	{"SeqNeverReused", testRevocationSeqNeverReused},
	{"Purge", testRevocationPurge},
}

func revocation(kind, subject string, expires time.Time) store.Revocation {
	return store.Revocation{
		Kind: kind, Subject: subject, Reason: "incident 42", CreatedAt: base,
		ExpiresAt: expires, CreatedBy: "soc@example.com",
	}
}

func testRevocationAdd(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustNoErr(t, s.AddRevocation(ctx, revocation(store.RevokeCredential, "ck_1", time.Time{})), "AddRevocation")
	cases := []struct {
		kind, subject string
		want          bool
	}{
		{store.RevokeCredential, "ck_1", true},
		{store.RevokeCredential, "ck_2", false},
		{store.RevokeToken, "ck_1", false}, // same subject, other kind
		{store.RevokeCredential, "CK_1", false},
	}
	for _, tc := range cases {
		got, err := s.IsRevoked(ctx, tc.kind, tc.subject, at(time.Hour))
		mustNoErr(t, err, "IsRevoked")
		if got != tc.want {
			t.Errorf("IsRevoked(%s, %s) = %v, want %v", tc.kind, tc.subject, got, tc.want)
		}
	}
}

func testRevocationExpiry(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	expires := at(time.Hour)
	mustNoErr(t, s.AddRevocation(ctx, revocation(store.RevokeToken, "jti-1", expires)), "AddRevocation")
	mustNoErr(t, s.AddRevocation(ctx, revocation(store.RevokePartner, "acme", time.Time{})), "AddRevocation never")
	cases := []struct {
		name    string
		kind    string
		subject string
		now     time.Time
		want    bool
	}{
		{"before expiry", store.RevokeToken, "jti-1", at(time.Minute), true},
		{"at expiry (fail closed)", store.RevokeToken, "jti-1", expires, true},
		{"1µs after expiry", store.RevokeToken, "jti-1", expires.Add(time.Microsecond), false},
		{"long after expiry", store.RevokeToken, "jti-1", at(48 * time.Hour), false},
		{"never expires", store.RevokePartner, "acme", at(100 * 365 * 24 * time.Hour), true},
		{"same instant other zone", store.RevokeToken, "jti-1", expires.UTC().Add(-time.Microsecond).In(time.FixedZone("X", -7*3600)), true},
	}
	for _, tc := range cases {
		got, err := s.IsRevoked(ctx, tc.kind, tc.subject, tc.now)
		mustNoErr(t, err, "IsRevoked")
		if got != tc.want {
			t.Errorf("%s: IsRevoked = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testRevocationDedup(t *testing.T, s store.Store) {
	never := time.Time{}
	cases := []struct {
		name        string
		first       time.Time
		second      time.Time
		wantExpires time.Time
		wantBumped  bool // the kept entry is the second one, under a new Seq
	}{
		{"later second", at(time.Hour), at(2 * time.Hour), at(2 * time.Hour), true},
		{"earlier second", at(2 * time.Hour), at(time.Hour), at(2 * time.Hour), false},
		{"equal second", at(time.Hour), at(time.Hour), at(time.Hour), false},
		{"never second", at(time.Hour), never, never, true},
		{"never first", never, at(time.Hour), never, false},
		{"never both", never, never, never, false},
	}
	ctx := ctxT(t)
	for i, tc := range cases {
		subject := fmt.Sprintf("sub-%d", i)
		first := revocation(store.RevokeConsumer, subject, tc.first)
		first.Reason = "first"
		second := revocation(store.RevokeConsumer, subject, tc.second)
		second.Reason = "second"
		mustNoErr(t, s.AddRevocation(ctx, first), tc.name+": AddRevocation first")
		before := revocationsFor(t, s, subject)
		mustNoErr(t, s.AddRevocation(ctx, second), tc.name+": AddRevocation second")
		after := revocationsFor(t, s, subject)
		if len(before) != 1 || len(after) != 1 {
			t.Errorf("%s: entries before/after = %d/%d, want 1/1", tc.name, len(before), len(after))
			continue
		}
		got := after[0]
		equalTime(t, tc.name+": ExpiresAt", got.ExpiresAt, want(tc.wantExpires))
		wantReason := "first"
		if tc.wantBumped {
			wantReason = "second"
		}
		if got.Reason != wantReason {
			t.Errorf("%s: Reason = %q, want %q", tc.name, got.Reason, wantReason)
		}
		if bumped := got.Seq > before[0].Seq; bumped != tc.wantBumped {
			t.Errorf("%s: Seq %d -> %d, want bumped = %v", tc.name, before[0].Seq, got.Seq, tc.wantBumped)
		}
		if tc.wantExpires.IsZero() {
			revoked, err := s.IsRevoked(ctx, store.RevokeConsumer, subject, at(1000*time.Hour))
			mustNoErr(t, err, "IsRevoked")
			if !revoked {
				t.Errorf("%s: never-expiring entry not revoked far in the future", tc.name)
			}
		}
	}
}

func revocationsFor(t *testing.T, s store.Store, subject string) []store.Revocation {
	t.Helper()
	all, err := s.RevocationsSince(ctxT(t), 0)
	mustNoErr(t, err, "RevocationsSince")
	var out []store.Revocation
	for _, r := range all {
		if r.Subject == subject {
			out = append(out, r)
		}
	}
	return out
}

func testRevocationRejects(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, r := range []store.Revocation{
		revocation("", "x", time.Time{}),
		revocation(store.RevokeToken, "", time.Time{}),
	} {
		if err := s.AddRevocation(ctx, r); err == nil {
			t.Errorf("AddRevocation(%q, %q) succeeded, want an error", r.Kind, r.Subject)
		}
	}
}

func testRevocationsSince(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	in := []store.Revocation{
		revocation(store.RevokeCredential, "ck_a", at(time.Hour)),
		revocation(store.RevokeToken, "jti-b", time.Time{}),
		revocation(store.RevokeConsumer, "c", at(2*time.Hour)),
		revocation(store.RevokePartner, "p", at(3*time.Hour)),
	}
	in[1].CreatedAt = at(time.Minute)
	in[2].Reason, in[2].CreatedBy = "", ""
	for _, r := range in {
		mustNoErr(t, s.AddRevocation(ctx, r), "AddRevocation")
	}
	all, err := s.RevocationsSince(ctx, 0)
	mustNoErr(t, err, "RevocationsSince(0)")
	if len(all) != len(in) {
		t.Fatalf("RevocationsSince(0) = %d entries, want %d", len(all), len(in))
	}
	for i, got := range all {
		exp := in[i]
		if i > 0 && got.Seq <= all[i-1].Seq {
			t.Errorf("entry %d: Seq %d not after %d", i, got.Seq, all[i-1].Seq)
		}
		if got.Seq <= 0 {
			t.Errorf("entry %d: Seq = %d, want > 0", i, got.Seq)
		}
		if got.Kind != exp.Kind || got.Subject != exp.Subject || got.Reason != exp.Reason || got.CreatedBy != exp.CreatedBy {
			t.Errorf("entry %d = %+v, want %+v", i, got, exp)
		}
		equalTime(t, fmt.Sprintf("entry %d CreatedAt", i), got.CreatedAt, want(exp.CreatedAt))
		equalTime(t, fmt.Sprintf("entry %d ExpiresAt", i), got.ExpiresAt, want(exp.ExpiresAt))
	}
	// Polling from each seen Seq returns exactly what follows it.
	for i, r := range all {
		rest, err := s.RevocationsSince(ctx, r.Seq)
		mustNoErr(t, err, "RevocationsSince")
		if len(rest) != len(all)-i-1 || (len(rest) > 0 && rest[0].Seq != all[i+1].Seq) {
			t.Errorf("RevocationsSince(%d) = %+v, want the %d entries after it", r.Seq, rest, len(all)-i-1)
		}
	}
	// A zero CreatedAt is filled in by the store.
	mustNoErr(t, s.AddRevocation(ctx, store.Revocation{Kind: store.RevokeToken, Subject: "fresh"}), "AddRevocation zero CreatedAt")
	last, err := s.RevocationsSince(ctx, all[len(all)-1].Seq)
	mustNoErr(t, err, "RevocationsSince")
	if len(last) != 1 || !last[0].ExpiresAt.IsZero() {
		t.Fatalf("fresh entry = %+v, want one, ExpiresAt zero", last)
	}
	aboutNow(t, "fresh CreatedAt", last[0].CreatedAt)
}

func testRevocationSeqNeverReused(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustNoErr(t, s.AddRevocation(ctx, revocation(store.RevokeToken, "a", at(time.Hour))), "AddRevocation a")
	mustNoErr(t, s.AddRevocation(ctx, revocation(store.RevokeToken, "b", at(time.Hour))), "AddRevocation b")
	all, err := s.RevocationsSince(ctx, 0)
	mustNoErr(t, err, "RevocationsSince")
	high := all[len(all)-1].Seq
	// Purge the newest entry, then add: the new Seq must still be higher, or
	// a replica that saw the purged entry would miss the new one.
	n, err := s.PurgeExpiredRevocations(ctx, at(2*time.Hour))
	mustNoErr(t, err, "PurgeExpiredRevocations")
	if n != 2 {
		t.Fatalf("purged %d, want 2", n)
	}
	mustNoErr(t, s.AddRevocation(ctx, revocation(store.RevokeToken, "c", time.Time{})), "AddRevocation c")
	since, err := s.RevocationsSince(ctx, high)
	mustNoErr(t, err, "RevocationsSince")
	if len(since) != 1 || since[0].Subject != "c" || since[0].Seq <= high {
		t.Fatalf("after purge RevocationsSince(%d) = %+v, want only c with a higher Seq", high, since)
	}
}

func testRevocationPurge(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	now := at(10 * time.Hour)
	entries := []struct {
		subject string
		expires time.Time
		kept    bool
	}{
		{"long-gone", at(time.Hour), false},
		{"just-gone", now.Add(-time.Microsecond), false},
		{"at-now", now, true},
		{"future", now.Add(time.Hour), true},
		{"never", time.Time{}, true},
	}
	for _, e := range entries {
		mustNoErr(t, s.AddRevocation(ctx, revocation(store.RevokeToken, e.subject, e.expires)), "AddRevocation "+e.subject)
	}
	n, err := s.PurgeExpiredRevocations(ctx, now)
	mustNoErr(t, err, "PurgeExpiredRevocations")
	if n != 2 {
		t.Errorf("PurgeExpiredRevocations = %d, want 2", n)
	}
	left, err := s.RevocationsSince(ctx, 0)
	mustNoErr(t, err, "RevocationsSince")
	var got []string
	for _, r := range left {
		got = append(got, r.Subject)
	}
	if exp := []string{"at-now", "future", "never"}; !slices.Equal(got, exp) {
		t.Errorf("left after purge = %v, want %v", got, exp)
	}
	n, err = s.PurgeExpiredRevocations(ctx, now)
	mustNoErr(t, err, "PurgeExpiredRevocations again")
	if n != 0 {
		t.Errorf("second purge = %d, want 0", n)
	}
}

// ---- Context

// calls is one invocation of every method that takes a context.
func calls() []struct {
	name string
	call func(ctx context.Context, s store.Store) error
} {
	return []struct {
		name string
		call func(ctx context.Context, s store.Store) error
	}{
		{"Ping", func(ctx context.Context, s store.Store) error { return s.Ping(ctx) }},
		{"SaveSnapshot", func(ctx context.Context, s store.Store) error {
			_, _, err := s.SaveSnapshot(ctx, snapshot("ctx", api("a", "v1")))
			return err
		}},
		{"LatestSnapshot", func(ctx context.Context, s store.Store) error {
			_, err := s.LatestSnapshot(ctx)
			return err
		}},
		{"ListAPIs", func(ctx context.Context, s store.Store) error {
			_, err := s.ListAPIs(ctx)
			return err
		}},
		{"CreateCredential", func(ctx context.Context, s store.Store) error {
			return s.CreateCredential(ctx, credential("ck_ctx_new", "c", "", base))
		}},
		{"GetCredential", func(ctx context.Context, s store.Store) error {
			_, err := s.GetCredential(ctx, "ck_ctx")
			return err
		}},
		{"ListCredentials", func(ctx context.Context, s store.Store) error {
			_, err := s.ListCredentials(ctx, store.CredentialFilter{})
			return err
		}},
		{"RevokeCredential", func(ctx context.Context, s store.Store) error {
			return s.RevokeCredential(ctx, "ck_ctx", base, "x")
		}},
		{"TouchCredential", func(ctx context.Context, s store.Store) error {
			return s.TouchCredential(ctx, "ck_ctx", at(time.Hour), "192.0.2.1")
		}},
		{"AddRevocation", func(ctx context.Context, s store.Store) error {
			return s.AddRevocation(ctx, revocation(store.RevokeToken, "ctx-new", time.Time{}))
		}},
		{"IsRevoked", func(ctx context.Context, s store.Store) error {
			_, err := s.IsRevoked(ctx, store.RevokeToken, "ctx", base)
			return err
		}},
		{"RevocationsSince", func(ctx context.Context, s store.Store) error {
			_, err := s.RevocationsSince(ctx, 0)
			return err
		}},
		{"PurgeExpiredRevocations", func(ctx context.Context, s store.Store) error {
			_, err := s.PurgeExpiredRevocations(ctx, base)
			return err
		}},
	}
}

// seedForContext gives the context tests real rows to act on, so a method
// cannot pass by failing with ErrNotFound instead of honouring ctx.
func seedForContext(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustNoErr(t, s.CreateCredential(ctx, credential("ck_ctx", "c", "", base)), "seed credential")
	mustNoErr(t, s.AddRevocation(ctx, revocation(store.RevokeToken, "ctx", time.Time{})), "seed revocation")
	_, _, err := s.SaveSnapshot(ctx, snapshot("seed", api("a", "v1")))
	mustNoErr(t, err, "seed snapshot")
}

func testCanceled(t *testing.T, s store.Store) {
	seedForContext(t, s)
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	for _, c := range calls() {
		err := c.call(ctx, s)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled ctx: err = %v, want context.Canceled", c.name, err)
		}
	}
	assertUnchanged(t, s)
}

func testDeadline(t *testing.T, s store.Store) {
	seedForContext(t, s)
	ctx, cancel := context.WithDeadline(ctxT(t), time.Now().Add(-time.Second))
	defer cancel()
	for _, c := range calls() {
		err := c.call(ctx, s)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with expired deadline: err = %v, want context.DeadlineExceeded", c.name, err)
		}
	}
	assertUnchanged(t, s)
}

// assertUnchanged checks calls with a dead context wrote nothing and left
// the store usable.
func assertUnchanged(t *testing.T, s store.Store) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := s.GetCredential(ctx, "ck_ctx_new"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("credential created under a dead context: err = %v", err)
	}
	c, err := s.GetCredential(ctx, "ck_ctx")
	mustNoErr(t, err, "GetCredential after dead-context calls")
	if !c.RevokedAt.IsZero() || !c.LastUsedAt.IsZero() {
		t.Errorf("credential changed under a dead context: %+v", c)
	}
	revs, err := s.RevocationsSince(ctx, 0)
	mustNoErr(t, err, "RevocationsSince after dead-context calls")
	if len(revs) != 1 {
		t.Errorf("revocations = %d, want 1", len(revs))
	}
	snap, err := s.LatestSnapshot(ctx)
	mustNoErr(t, err, "LatestSnapshot after dead-context calls")
	if snap.Digest != "seed" {
		t.Errorf("latest digest = %q, want seed", snap.Digest)
	}
}

// ---- Concurrency

var concurrencyTests = []test{
	{"MixedWorkload", testConcurrentMixed},
	{"SameSnapshot", testConcurrentSameSnapshot},
	{"TouchKeepsLatest", testConcurrentTouch},
	{"RevocationsSeqUnique", testConcurrentRevocations},
}

const workers = 8

// parallel runs fn on workers goroutines and fails on any error: under
// contention a store must queue, never surface a busy or lock error.
func parallel(t *testing.T, fn func(worker int) error) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w := range workers {
		wg.Go(func() {
			if err := fn(w); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("worker %d: %w", w, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func testConcurrentMixed(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const perWorker = 10
	parallel(t, func(w int) error {
		for i := range perWorker {
			id := fmt.Sprintf("ck_%d_%d", w, i)
			if err := s.CreateCredential(ctx, credential(id, fmt.Sprintf("consumer-%d", w), "", at(time.Duration(i)*time.Second))); err != nil {
				return err
			}
			if err := s.TouchCredential(ctx, id, at(time.Hour), "192.0.2.1"); err != nil {
				return err
			}
			if _, err := s.GetCredential(ctx, id); err != nil {
				return err
			}
			if i%3 == 0 {
				if err := s.RevokeCredential(ctx, id, at(2*time.Hour), "test"); err != nil {
					return err
				}
			}
			if err := s.AddRevocation(ctx, revocation(store.RevokeToken, id, at(time.Duration(i)*time.Hour))); err != nil {
				return err
			}
			if _, err := s.IsRevoked(ctx, store.RevokeToken, id, base); err != nil {
				return err
			}
			if _, _, err := s.SaveSnapshot(ctx, snapshot(fmt.Sprintf("d%d", i%2), api("svc", "v1"))); err != nil {
				return err
			}
			if _, err := s.ListCredentials(ctx, store.CredentialFilter{Consumer: fmt.Sprintf("consumer-%d", w)}); err != nil {
				return err
			}
			if _, err := s.ListAPIs(ctx); err != nil {
				return err
			}
			if _, err := s.RevocationsSince(ctx, 0); err != nil {
				return err
			}
			if _, err := s.PurgeExpiredRevocations(ctx, at(-time.Hour)); err != nil {
				return err
			}
		}
		return nil
	})
	all, err := s.ListCredentials(ctx, store.CredentialFilter{IncludeRevoked: true})
	mustNoErr(t, err, "ListCredentials")
	if len(all) != workers*perWorker {
		t.Errorf("credentials = %d, want %d", len(all), workers*perWorker)
	}
	active, err := s.ListCredentials(ctx, store.CredentialFilter{})
	mustNoErr(t, err, "ListCredentials active")
	if want := workers * (perWorker - (perWorker+2)/3); len(active) != want {
		t.Errorf("active credentials = %d, want %d", len(active), want)
	}
	revs, err := s.RevocationsSince(ctx, 0)
	mustNoErr(t, err, "RevocationsSince")
	if len(revs) != workers*perWorker {
		t.Errorf("revocations = %d, want %d", len(revs), workers*perWorker)
	}
}

func testConcurrentSameSnapshot(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var (
		mu      sync.Mutex
		created int
		ids     = map[int64]bool{}
	)
	parallel(t, func(int) error {
		id, c, err := s.SaveSnapshot(ctx, snapshot("same", api("a", "v1"), api("b", "v1")))
		mu.Lock()
		defer mu.Unlock()
		if c {
			created++
		}
		ids[id] = true
		return err
	})
	if created != 1 || len(ids) != 1 {
		t.Fatalf("concurrent identical snapshots: created %d rows with ids %v, want exactly 1", created, ids)
	}
	apis, err := s.ListAPIs(ctx)
	mustNoErr(t, err, "ListAPIs")
	if len(apis) != 2 {
		t.Fatalf("ListAPIs = %d records, want 2", len(apis))
	}
}

func testConcurrentTouch(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustNoErr(t, s.CreateCredential(ctx, credential("ck_hot", "c", "", base)), "CreateCredential")
	const perWorker = 10
	// Interleave times so later ones often arrive first.
	parallel(t, func(w int) error {
		for i := range perWorker {
			n := (i*workers + w*7) % (workers * perWorker)
			if err := s.TouchCredential(ctx, "ck_hot", at(time.Duration(n)*time.Second), fmt.Sprintf("10.0.0.%d", n)); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := s.GetCredential(ctx, "ck_hot")
	mustNoErr(t, err, "GetCredential")
	last := workers*perWorker - 1
	equalTime(t, "LastUsedAt", got.LastUsedAt, want(at(time.Duration(last)*time.Second)))
	if got.LastUsedIP != fmt.Sprintf("10.0.0.%d", last) {
		t.Errorf("LastUsedIP = %q, want the latest touch's", got.LastUsedIP)
	}
}

func testConcurrentRevocations(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const perWorker = 10
	// Every worker revokes the same subjects with growing expiries, so
	// inserts and replacements race.
	parallel(t, func(w int) error {
		for i := range perWorker {
			r := revocation(store.RevokeToken, fmt.Sprintf("jti-%d", i), at(time.Duration(w+1)*time.Hour))
			if err := s.AddRevocation(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	revs, err := s.RevocationsSince(ctx, 0)
	mustNoErr(t, err, "RevocationsSince")
	if len(revs) != perWorker {
		t.Fatalf("revocations = %d, want %d (one per subject)", len(revs), perWorker)
	}
	for i, r := range revs {
		if i > 0 && r.Seq <= revs[i-1].Seq {
			t.Errorf("Seq not increasing: %d then %d", revs[i-1].Seq, r.Seq)
		}
		equalTime(t, r.Subject+" ExpiresAt", r.ExpiresAt, want(at(workers*time.Hour)))
	}
}

// BenchmarkIsRevoked measures the revocation check the gateway runs on every
// authenticated request, against a list of 1000 entries, half of them hits.
func BenchmarkIsRevoked(b *testing.B, s store.Store) {
	ctx := b.Context()
	const n = 1000
	for i := range n {
		r := revocation(store.RevokeToken, fmt.Sprintf("jti-%04d", i), time.Time{})
		if err := s.AddRevocation(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		// Even i: present; odd i: a subject never revoked.
		subject := fmt.Sprintf("jti-%04d", (i/2)%n)
		if i%2 == 1 {
			subject = fmt.Sprintf("miss-%04d", (i/2)%n)
		}
		revoked, err := s.IsRevoked(ctx, store.RevokeToken, subject, now)
		if err != nil {
			b.Fatal(err)
		}
		if revoked != (i%2 == 0) {
			b.Fatalf("IsRevoked(%s) = %v", subject, revoked)
		}
		i++
	}
}
