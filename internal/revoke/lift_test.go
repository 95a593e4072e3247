package revoke

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/store"
)

// TestNetworkBlockAndLiftAcrossReplicas: a blocked network and a revoked
// partner reach the other replica, and so does the explicit lift that
// re-enables the partner; the network block stays until lifted itself.
func TestNetworkBlockAndLiftAcrossReplicas(t *testing.T) {
	url := redisURL(t)
	dsn, schema := postgresSchema(t)
	prefix := randomName("gh_test_") + ":"
	const poll = 10 * time.Second // only notices can make it in time
	na, nb := newNotifier(t, url, prefix), newNotifier(t, url, prefix)
	a := New(openPostgres(t, dsn, schema), Options{Poll: poll, Notifier: na, Logger: quiet})
	b := New(openPostgres(t, dsn, schema), Options{Poll: poll, Notifier: nb, Logger: quiet})
	run(t, a)
	run(t, b)
	waitSubscribed(t, url, na.Channel(), 2)

	inside, outside := netip.MustParseAddr("203.0.113.77"), netip.MustParseAddr("198.51.100.1")
	mapped := netip.MustParseAddr("::ffff:203.0.113.77")
	p := &authn.Principal{CredentialID: "ck_1", Consumer: "acme-billing", Partner: "acme"}
	ctx := t.Context()
	if err := a.Revoke(ctx, store.Revocation{Kind: store.RevokeNetwork, Subject: "203.0.113.0/24", Reason: "incident"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, store.Revocation{Kind: store.RevokePartner, Subject: "acme", Reason: "incident"}); err != nil {
		t.Fatal(err)
	}
	if !a.BlockedIP(inside) || !a.BlockedIP(mapped) || a.BlockedIP(outside) {
		t.Fatal("the revoking replica does not block the network at once")
	}
	waitUntil(t, time.Second, "replica B blocks the network and the partner", func() bool {
		ok, _ := b.Revoked(p)
		return ok && b.BlockedIP(inside)
	})

	if err := a.Lift(ctx, store.RevokePartner, "acme", "bob", "incident closed"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := a.Revoked(p); ok {
		t.Fatal("the lifting replica still refuses the partner")
	}
	waitUntil(t, time.Second, "replica B re-enables the partner", func() bool {
		ok, _ := b.Revoked(p)
		return !ok
	})
	if !b.BlockedIP(inside) {
		t.Error("lifting the partner unblocked the network")
	}
	// Revoking again after a lift works (the entry is replaced, not stuck).
	if err := a.Revoke(ctx, store.Revocation{Kind: store.RevokePartner, Subject: "acme"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Second, "replica B refuses the partner again", func() bool {
		ok, _ := b.Revoked(p)
		return ok
	})
}

func TestNetworkRevocationValidated(t *testing.T) {
	l := New(openSQLite(t, filepath.Join(t.TempDir(), "g.db")), Options{Logger: quiet})
	for _, bad := range []string{"203.0.113.7/24", "203.0.113.0", "not-a-net", ""} {
		if err := l.Revoke(t.Context(), store.Revocation{Kind: store.RevokeNetwork, Subject: bad}); err == nil {
			t.Errorf("network %q accepted", bad)
		}
	}
	if err := l.Revoke(t.Context(), store.Revocation{Kind: store.RevokeNetwork, Subject: "2001:db8::/48"}); err != nil {
		t.Fatal(err)
	}
	if !l.BlockedIP(netip.MustParseAddr("2001:db8:0:1::5")) || l.BlockedIP(netip.MustParseAddr("2001:db9::1")) || l.BlockedIP(netip.Addr{}) {
		t.Error("IPv6 block wrong")
	}
	if err := l.Lift(t.Context(), store.RevokeConsumer, "nobody", "x", ""); err == nil {
		t.Error("lifting a missing entry succeeded")
	}
	allocs := testing.AllocsPerRun(100, func() { l.BlockedIP(netip.MustParseAddr("2001:db8::1")) })
	if allocs != 0 {
		t.Errorf("BlockedIP allocates %v times", allocs)
	}
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
}
