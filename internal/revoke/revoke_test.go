package revoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/postgres"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// nopRedisLogger silences go-redis's own dial-failure lines, expected by
// the tests that point at an unreachable Redis.
type nopRedisLogger struct{}

func (nopRedisLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(nopRedisLogger{})
	os.Exit(m.Run())
}

func randomName(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func openSQLite(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// postgresSchema returns the test DSN and a fresh schema dropped when the
// test ends, or skips without GATEHOUSE_TEST_POSTGRES.
func postgresSchema(t *testing.T) (dsn, schema string) {
	t.Helper()
	dsn = os.Getenv("GATEHOUSE_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("GATEHOUSE_TEST_POSTGRES not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable): PostgreSQL replica test skipped")
	}
	schema = randomName("gh_revoke_")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return dsn, schema
}

func openPostgres(t *testing.T, dsn, schema string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, dsn, postgres.WithSchema(schema))
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func redisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("GATEHOUSE_TEST_REDIS")
	if u == "" {
		t.Skip("GATEHOUSE_TEST_REDIS not set (e.g. redis://127.0.0.1:6379/0): Redis propagation test skipped")
	}
	return u
}

func newNotifier(t *testing.T, url, prefix string) *RedisNotifier {
	t.Helper()
	n, err := NewRedisNotifier(url, prefix, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// run starts l.Run and stops it (waiting for it to return) when the test ends.
func run(t *testing.T, l *List) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// waitRevoked waits up to limit for l to revoke p and returns how long it took.
func waitRevoked(t *testing.T, l *List, p *authn.Principal, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if ok, _ := l.Revoked(p); ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("not revoked after %v", limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRevokeLocalIsImmediate(t *testing.T) {
	st := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	l := New(st, Options{Logger: quiet})
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	victim := &authn.Principal{CredentialID: "ck_victim", TokenID: "jti-victim", Consumer: "app-victim", Partner: "evilcorp"}
	for _, tc := range []struct {
		kind, subject string
		hit           *authn.Principal
		twin          *authn.Principal // same shape, other identity: must pass
	}{
		{store.RevokeCredential, "ck_1", &authn.Principal{CredentialID: "ck_1", Consumer: "a"}, &authn.Principal{CredentialID: "ck_2", Consumer: "a"}},
		{store.RevokeToken, "jti-1", &authn.Principal{TokenID: "jti-1", Consumer: "b"}, &authn.Principal{TokenID: "jti-2", Consumer: "b"}},
		{store.RevokeConsumer, "app-c", &authn.Principal{CredentialID: "ck_9", Consumer: "app-c"}, &authn.Principal{CredentialID: "ck_9", Consumer: "app-d"}},
		{store.RevokePartner, "acme", &authn.Principal{Consumer: "acme-billing", Partner: "acme"}, &authn.Principal{Consumer: "acme-billing", Partner: "globex"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			if err := l.Revoke(t.Context(), store.Revocation{Kind: tc.kind, Subject: tc.subject, Reason: "test"}); err != nil {
				t.Fatal(err)
			}
			if ok, kind := l.Revoked(tc.hit); !ok || kind != tc.kind {
				t.Errorf("Revoked(hit) = %v, %q; want true, %q", ok, kind, tc.kind)
			}
			if ok, kind := l.Revoked(tc.twin); ok {
				t.Errorf("Revoked(benign twin) = true (%s)", kind)
			}
			// Persisted before it was applied.
			if ok, err := st.IsRevoked(t.Context(), tc.kind, tc.subject, time.Now()); err != nil || !ok {
				t.Errorf("store IsRevoked = %v, %v; want true", ok, err)
			}
		})
	}
	// A subject of one kind never matches another kind's field.
	if err := l.Revoke(t.Context(), store.Revocation{Kind: store.RevokeToken, Subject: "shared-name"}); err != nil {
		t.Fatal(err)
	}
	if ok, kind := l.Revoked(&authn.Principal{CredentialID: "shared-name", Consumer: "shared-name", Partner: "shared-name"}); ok {
		t.Errorf("jti entry matched another field (%s)", kind)
	}
	if ok, _ := l.Revoked(victim); ok {
		t.Error("unrelated principal revoked")
	}
	if ok, _ := l.Revoked(nil); ok {
		t.Error("nil principal revoked")
	}
}

func TestRevokeRejectsBadInput(t *testing.T) {
	st := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	l := New(st, Options{Logger: quiet})
	for _, r := range []store.Revocation{
		{Kind: "token", Subject: "x"}, // not a store kind
		{Kind: store.RevokeToken},
		{Kind: store.RevokeToken, Subject: string(make([]byte, MaxSubjectBytes+1))},
	} {
		if err := l.Revoke(t.Context(), r); err == nil {
			t.Errorf("Revoke(%q, %d bytes) accepted", r.Kind, len(r.Subject))
		}
	}
	if l.Len() != 0 {
		t.Fatalf("Len = %d after rejected revocations", l.Len())
	}
}

func TestReplicasShareSQLiteViaPoll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	const poll = 100 * time.Millisecond
	a := New(openSQLite(t, path), Options{Poll: poll, Logger: quiet})
	b := New(openSQLite(t, path), Options{Poll: poll, Logger: quiet})
	run(t, a)
	run(t, b)

	p := &authn.Principal{TokenID: "jti-" + randomName(""), Consumer: "app"}
	if ok, _ := b.Revoked(p); ok {
		t.Fatal("revoked before Revoke")
	}
	if err := a.Revoke(t.Context(), store.Revocation{Kind: store.RevokeToken, Subject: p.TokenID,
		ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	took := waitRevoked(t, b, p, time.Second)
	t.Logf("replica B saw the revocation after %v (poll %v)", took, poll)
	if took > 3*poll {
		t.Errorf("took %v, want within about one poll interval (%v)", took, poll)
	}
}

// TestRedisNoticeBeatsPoll proves the pub/sub path: the poll is set to 10 s,
// so seeing the revocation well under a second can only come from a notice.
func TestRedisNoticeBeatsPoll(t *testing.T) {
	url := redisURL(t)
	dsn, schema := postgresSchema(t)
	prefix := randomName("gh_test_") + ":"
	const poll = 10 * time.Second
	na, nb := newNotifier(t, url, prefix), newNotifier(t, url, prefix)
	a := New(openPostgres(t, dsn, schema), Options{Poll: poll, Notifier: na, Logger: quiet})
	b := New(openPostgres(t, dsn, schema), Options{Poll: poll, Notifier: nb, Logger: quiet})
	run(t, a)
	run(t, b)
	waitSubscribed(t, url, na.Channel(), 2)

	for i := range 3 {
		p := &authn.Principal{CredentialID: fmt.Sprintf("ck_%d_%s", i, randomName("")), Consumer: "app"}
		if err := a.Revoke(t.Context(), store.Revocation{Kind: store.RevokeCredential, Subject: p.CredentialID}); err != nil {
			t.Fatal(err)
		}
		took := waitRevoked(t, b, p, 2*time.Second)
		t.Logf("revocation %d reached replica B in %v (poll %v)", i, took, poll)
		if took > 500*time.Millisecond {
			t.Errorf("took %v: want well under 1 s through pub/sub", took)
		}
	}
}

// waitSubscribed waits until channel has want subscribers, so a notice
// published next cannot be missed.
func waitSubscribed(t *testing.T, url, channel string, want int64) {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := c.PubSubNumSub(t.Context(), channel).Result()
		if err == nil && n[channel] >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("channel %s has %d subscribers (err %v), want %d", channel, n[channel], err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestForgedNoticeChangesNothing: whoever can publish on the channel can
// make replicas read the store early, but cannot revoke or un-revoke.
func TestForgedNoticeChangesNothing(t *testing.T) {
	url := redisURL(t)
	prefix := randomName("gh_test_") + ":"
	st := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	n := newNotifier(t, url, prefix)
	l := New(st, Options{Poll: 10 * time.Second, Notifier: n, Logger: quiet})
	if err := l.Revoke(t.Context(), store.Revocation{Kind: store.RevokeConsumer, Subject: "bad-app"}); err != nil {
		t.Fatal(err)
	}
	run(t, l)
	waitSubscribed(t, url, n.Channel(), 1)

	opt, _ := redis.ParseURL(url)
	c := redis.NewClient(opt)
	defer c.Close()
	for _, payload := range []string{
		`{"kind":"consumer","subject":"good-app"}`,
		`{"unrevoke":{"kind":"consumer","subject":"bad-app"}}`,
		"", string(make([]byte, 4096)),
	} {
		if err := c.Publish(t.Context(), n.Channel(), payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Let the wake-ups run their store reads.
	time.Sleep(200 * time.Millisecond)
	if ok, _ := l.Revoked(&authn.Principal{Consumer: "good-app"}); ok {
		t.Error("a forged notice revoked good-app")
	}
	if ok, _ := l.Revoked(&authn.Principal{Consumer: "bad-app"}); !ok {
		t.Error("a forged notice un-revoked bad-app")
	}
}

// TestRedisDownFallsBackToPoll: with Redis unreachable, Revoke still
// succeeds promptly and the poll carries the revocation.
func TestRedisDownFallsBackToPoll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	const poll = 100 * time.Millisecond
	down := "redis://127.0.0.1:1/0"
	a := New(openSQLite(t, path), Options{Poll: poll, Notifier: newNotifier(t, down, "x:"), Logger: quiet})
	b := New(openSQLite(t, path), Options{Poll: poll, Notifier: newNotifier(t, down, "x:"), Logger: quiet})
	run(t, a)
	run(t, b)

	p := &authn.Principal{Partner: "partner-" + randomName(""), Consumer: "app"}
	start := time.Now()
	if err := a.Revoke(t.Context(), store.Revocation{Kind: store.RevokePartner, Subject: p.Partner}); err != nil {
		t.Fatalf("Revoke with Redis down: %v", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Revoke took %v with Redis down", took)
	}
	if ok, _ := a.Revoked(p); !ok {
		t.Error("not revoked locally")
	}
	took := waitRevoked(t, b, p, 2*time.Second)
	t.Logf("with Redis down, replica B saw it after %v (poll %v)", took, poll)
}

func TestSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	first, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	l := New(first, Options{Logger: quiet})
	for _, r := range []store.Revocation{
		{Kind: store.RevokeCredential, Subject: "ck_old"},
		{Kind: store.RevokeToken, Subject: "jti-old", ExpiresAt: time.Now().Add(time.Hour)},
	} {
		if err := l.Revoke(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	first.Close()

	restarted := New(openSQLite(t, path), Options{Logger: quiet})
	if ok, _ := restarted.Revoked(&authn.Principal{CredentialID: "ck_old"}); ok {
		t.Fatal("revoked before Sync: test is not testing the reload")
	}
	if err := restarted.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*authn.Principal{{CredentialID: "ck_old"}, {TokenID: "jti-old"}} {
		if ok, _ := restarted.Revoked(p); !ok {
			t.Errorf("%+v not revoked after restart", p)
		}
	}
	if restarted.LastSync().IsZero() {
		t.Error("LastSync zero after Sync")
	}
}

// fakeClock is a settable clock for the expiry tests.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestExpiry(t *testing.T) {
	st := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	clock := &fakeClock{}
	start := time.Now().Truncate(time.Second)
	clock.Set(start)
	l := New(st, Options{Logger: quiet, Clock: clock.Now})
	ctx := t.Context()
	tokExp := start.Add(15 * time.Minute)
	p := &authn.Principal{TokenID: "jti-exp", Consumer: "app"}

	if err := l.Revoke(ctx, store.Revocation{Kind: store.RevokeToken, Subject: p.TokenID, ExpiresAt: tokExp}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.Revoked(p); !ok {
		t.Fatal("not revoked")
	}
	clock.Set(tokExp) // in force up to and including its expiry
	if ok, _ := l.Revoked(p); !ok {
		t.Error("not revoked at the expiry instant")
	}
	clock.Advance(time.Microsecond)
	if ok, _ := l.Revoked(p); ok {
		t.Error("still revoked after the token's expiry")
	}
	if n := l.Prune(); n != 1 || l.Len() != 0 {
		t.Errorf("Prune = %d, Len = %d; want 1, 0", n, l.Len())
	}

	// An already expired revocation is stored but changes nothing.
	if err := l.Revoke(ctx, store.Revocation{Kind: store.RevokeToken, Subject: "jti-dead", ExpiresAt: start}); err != nil {
		t.Fatal(err)
	}
	if l.Len() != 0 {
		t.Errorf("expired revocation held: Len = %d", l.Len())
	}

	// The later expiry wins; an earlier one never shortens an entry.
	clock.Set(start)
	q := &authn.Principal{CredentialID: "ck_ext"}
	rev := func(exp time.Time) {
		t.Helper()
		if err := l.Revoke(ctx, store.Revocation{Kind: store.RevokeCredential, Subject: q.CredentialID, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	rev(start.Add(time.Minute))
	rev(start.Add(time.Hour))
	rev(start.Add(time.Second)) // must not shorten
	clock.Set(start.Add(30 * time.Minute))
	if l.Prune(); l.Len() != 1 {
		t.Errorf("Len = %d after pruning a stale heap item", l.Len())
	}
	if ok, _ := l.Revoked(q); !ok {
		t.Error("extended entry expired at its first expiry")
	}
	rev(time.Time{}) // never
	clock.Set(start.Add(24 * 365 * time.Hour))
	l.Prune()
	if ok, _ := l.Revoked(q); !ok {
		t.Error("entry extended to never has expired")
	}

	// A replica catching up from the store agrees on every instant.
	clock.Set(start)
	r := New(st, Options{Logger: quiet, Clock: clock.Now})
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.Revoked(p); !ok {
		t.Error("replica: jti-exp not revoked before its expiry")
	}
	clock.Set(tokExp.Add(time.Microsecond))
	if ok, _ := r.Revoked(p); ok {
		t.Error("replica: jti-exp revoked after its expiry")
	}
}

func TestPurgesStore(t *testing.T) {
	st := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	past := time.Now().Add(-time.Hour)
	if err := st.AddRevocation(t.Context(), store.Revocation{Kind: store.RevokeToken, Subject: "old", ExpiresAt: past}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddRevocation(t.Context(), store.Revocation{Kind: store.RevokeToken, Subject: "live", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	l := New(st, Options{Logger: quiet, PurgeEvery: 20 * time.Millisecond, PurgeGrace: time.Millisecond})
	run(t, l)
	deadline := time.Now().Add(2 * time.Second)
	for {
		revs, err := st.RevocationsSince(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(revs) == 1 && revs[0].Subject == "live" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store still holds %d entries; want only the live one", len(revs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok, _ := l.Revoked(&authn.Principal{TokenID: "live"}); !ok {
		t.Error("live entry lost")
	}
}

func TestCapacity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	st := openSQLite(t, path)
	ctx := t.Context()
	l := New(st, Options{Logger: quiet, MaxEntries: 2})
	for _, s := range []string{"a", "b"} {
		if err := l.Revoke(ctx, store.Revocation{Kind: store.RevokeToken, Subject: s, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	err := l.Revoke(ctx, store.Revocation{Kind: store.RevokeToken, Subject: "c"})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("third Revoke: err = %v, want ErrFull", err)
	}
	// Refused before anything was written: no half-done revocation.
	if ok, _ := st.IsRevoked(ctx, store.RevokeToken, "c", time.Now()); ok {
		t.Error("refused revocation reached the store")
	}
	// Updating an existing entry is always possible.
	if err := l.Revoke(ctx, store.Revocation{Kind: store.RevokeToken, Subject: "a"}); err != nil {
		t.Errorf("extending an entry of a full list: %v", err)
	}

	// Entries from the store are never dropped, even past the cap.
	small := New(openSQLite(t, path), Options{Logger: quiet, MaxEntries: 1})
	if err := small.Sync(ctx); !errors.Is(err, ErrFull) {
		t.Errorf("Sync over the cap: err = %v, want ErrFull", err)
	}
	for _, s := range []string{"a", "b"} {
		if ok, _ := small.Revoked(&authn.Principal{TokenID: s}); !ok {
			t.Errorf("entry %s dropped by a full list", s)
		}
	}
}

// TestCapacityCountsOnlyLiveEntries: a full list makes room by pruning
// what has expired before it refuses anything.
func TestCapacityCountsOnlyLiveEntries(t *testing.T) {
	clock := &fakeClock{}
	start := time.Now()
	clock.Set(start)
	l := New(openSQLite(t, filepath.Join(t.TempDir(), "g.db")), Options{Logger: quiet, MaxEntries: 1, Clock: clock.Now})
	if err := l.Revoke(t.Context(), store.Revocation{Kind: store.RevokeToken, Subject: "old", ExpiresAt: start.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	if err := l.Revoke(t.Context(), store.Revocation{Kind: store.RevokeToken, Subject: "new", ExpiresAt: start.Add(time.Hour)}); err != nil {
		t.Fatalf("Revoke into a list holding only an expired entry: %v", err)
	}
	if ok, _ := l.Revoked(&authn.Principal{TokenID: "new"}); !ok || l.Len() != 1 {
		t.Errorf("new entry revoked = %v, Len = %d; want true, 1", ok, l.Len())
	}
}

func TestStoreDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	l := New(st, Options{Logger: quiet})
	if err := l.Revoke(t.Context(), store.Revocation{Kind: store.RevokeConsumer, Subject: "bad"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := l.Sync(t.Context()); err == nil {
		t.Error("Sync on a closed store succeeded")
	}
	if ok, _ := l.Revoked(&authn.Principal{Consumer: "bad"}); !ok {
		t.Error("list forgot an entry when the store went away")
	}
	if err := l.Revoke(t.Context(), store.Revocation{Kind: store.RevokeConsumer, Subject: "other"}); err == nil {
		t.Error("Revoke succeeded without the store")
	}
	if ok, _ := l.Revoked(&authn.Principal{Consumer: "other"}); ok {
		t.Error("a revocation that failed to persist was applied")
	}
}

func TestRunTwice(t *testing.T) {
	l := New(openSQLite(t, filepath.Join(t.TempDir(), "g.db")), Options{Logger: quiet})
	run(t, l)
	time.Sleep(10 * time.Millisecond)
	if err := l.Run(t.Context()); err == nil {
		t.Error("second Run accepted")
	}
}

// TestConcurrentUse runs lookups beside revocations, syncs and prunes for
// the race detector.
func TestConcurrentUse(t *testing.T) {
	st := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	l := New(st, Options{Logger: quiet, Poll: 5 * time.Millisecond})
	run(t, l)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			p := &authn.Principal{CredentialID: "ck_5", TokenID: "t", Consumer: "c", Partner: "p"}
			for {
				select {
				case <-stop:
					return
				default:
					l.Revoked(p)
				}
			}
		})
	}
	for i := range 20 {
		if err := l.Revoke(t.Context(), store.Revocation{Kind: store.RevokeCredential, Subject: fmt.Sprintf("ck_%d", i),
			ExpiresAt: time.Now().Add(time.Duration(i) * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		l.Prune()
	}
	close(stop)
	wg.Wait()
}

func TestRevokedDoesNotAllocate(t *testing.T) {
	l := New(openSQLite(t, filepath.Join(t.TempDir(), "g.db")), Options{Logger: quiet})
	fill(t, l, 1000)
	hit := &authn.Principal{CredentialID: "ck_x", TokenID: "tok-500", Consumer: "c", Partner: "p"}
	miss := &authn.Principal{CredentialID: "ck_x", TokenID: "tok-none", Consumer: "c", Partner: "p"}
	if n := testing.AllocsPerRun(1000, func() { l.Revoked(hit); l.Revoked(miss) }); n != 0 {
		t.Errorf("Revoked allocates %.1f times per call", n)
	}
}

// fill applies n token entries straight into l (no store round trips),
// half of them expiring.
func fill(t testing.TB, l *List, n int) {
	t.Helper()
	exp := time.Now().Add(time.Hour)
	for i := range n {
		e := exp
		if i%2 == 0 {
			e = time.Time{}
		}
		l.apply(kToken, fmt.Sprintf("tok-%d", i), e)
	}
}

func BenchmarkRevoked(b *testing.B) {
	st := openSQLite(b, filepath.Join(b.TempDir(), "g.db"))
	for _, size := range []int{0, 100_000} {
		l := New(st, Options{Logger: quiet})
		fill(b, l, size)
		cases := []struct {
			name string
			p    *authn.Principal
		}{
			{"miss", &authn.Principal{CredentialID: "ck_live", TokenID: "tok-live", Consumer: "app", Partner: "acme"}},
			{"hit-expiring", &authn.Principal{CredentialID: "ck_live", TokenID: "tok-501", Consumer: "app", Partner: "acme"}},
		}
		for _, c := range cases {
			if size == 0 && c.name != "miss" {
				continue
			}
			b.Run(fmt.Sprintf("entries=%d/%s", size, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					l.Revoked(c.p)
				}
			})
			b.Run(fmt.Sprintf("entries=%d/%s/parallel", size, c.name), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						l.Revoked(c.p)
					}
				})
			})
		}
	}
}

// TestRedisReconnects kills the subscriber's connection on the server: the
// notifier must resubscribe by itself and notices must flow again.
func TestRedisReconnects(t *testing.T) {
	url := redisURL(t)
	path := filepath.Join(t.TempDir(), "g.db")
	prefix := randomName("gh_test_") + ":"
	name := randomName("ghrevoke")
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	nb := newNotifier(t, url+sep+"client_name="+name, prefix)
	const poll = 10 * time.Second
	a := New(openSQLite(t, path), Options{Poll: poll, Notifier: newNotifier(t, url, prefix), Logger: quiet})
	b := New(openSQLite(t, path), Options{Poll: poll, Notifier: nb, Logger: quiet})
	run(t, a)
	run(t, b)
	waitSubscribed(t, url, nb.Channel(), 2)

	opt, _ := redis.ParseURL(url)
	admin := redis.NewClient(opt)
	defer admin.Close()
	list, err := admin.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for line := range strings.SplitSeq(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		for f := range strings.FieldsSeq(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				if err := admin.Do(t.Context(), "CLIENT", "KILL", "ID", id).Err(); err != nil {
					t.Fatal(err)
				}
				killed++
			}
		}
	}
	if killed == 0 {
		t.Fatalf("no client named %s in CLIENT LIST", name)
	}
	// Gone, then back on its own.
	deadline := time.Now().Add(5 * time.Second)
	for nb.Subscribed() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	waitSubscribed(t, url, nb.Channel(), 2)
	for !nb.Subscribed() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}

	p := &authn.Principal{Consumer: "app-" + randomName("")}
	if err := a.Revoke(t.Context(), store.Revocation{Kind: store.RevokeConsumer, Subject: p.Consumer}); err != nil {
		t.Fatal(err)
	}
	took := waitRevoked(t, b, p, 2*time.Second)
	t.Logf("after a reconnect, the notice reached B in %v (poll %v)", took, poll)
}
