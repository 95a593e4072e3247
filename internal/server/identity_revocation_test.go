package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/internal/store"
)

// freshPostgres returns a DSN whose search_path is a new, empty schema
// (dropped when the test ends), so gateways started on it share a store
// that no other test sees. It skips without GATEHOUSE_TEST_POSTGRES.
func freshPostgres(t *testing.T) string {
	t.Helper()
	base := os.Getenv("GATEHOUSE_TEST_POSTGRES")
	if base == "" {
		t.Skip("GATEHOUSE_TEST_POSTGRES not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable): cross-process revocation test skipped")
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "gh_e2e_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to GATEHOUSE_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	// Registered before the gateways start, so it runs after they closed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("GATEHOUSE_TEST_POSTGRES is not a URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// refusedWithin polls g with key every 20 ms until it answers 401, and
// returns how long after start that was; it fails the test after limit.
func refusedWithin(t *testing.T, g *gw, key string, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for {
		s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", key)
		elapsed := time.Since(start)
		if s == http.StatusUnauthorized {
			return elapsed
		}
		if s != http.StatusOK {
			t.Fatalf("unexpected status %d while waiting for the revocation", s)
		}
		if elapsed > limit {
			t.Fatalf("the revoked key still works on the other gateway %v after the revocation (limit %v)", elapsed, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// crossProcessRevocation runs two gateways (two server.Start) on one
// PostgreSQL store: a key issued on A works on B; revoked on A it stops on
// A at once and on B within limit; B restarted still refuses it.
func crossProcessRevocation(t *testing.T, cfg idConfig, limit time.Duration) {
	orders := newEchoUpstream(t, "orders-backend")
	billing := newEchoUpstream(t, "billing-backend")
	cfg.APIs = policyAPIs(orders.URL(), billing.URL(), "apikey")
	text := cfg.render()
	a := startGatewayIn(t, t.TempDir(), text)
	b := startGatewayIn(t, t.TempDir(), text)
	ctx := context.Background()
	svcA := a.srv.Gateway().Keys()

	// Warm-up: a first revocation must have reached B before the one that
	// is measured, so B's subscription (or poll loop) is surely running.
	warm, warmID := a.issueKey(t, "acme-billing", nil, 0)
	if s := b.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", warm); s != 200 {
		t.Fatalf("warm-up key on B: %d", s)
	}
	if err := svcA.Revoke(ctx, warmID, "warm-up"); err != nil {
		t.Fatal(err)
	}
	refusedWithin(t, b, warm, time.Now(), 15*time.Second)

	key, id := a.issueKey(t, "acme-billing", nil, 0)
	keep, _ := a.issueKey(t, "acme-billing", nil, 0)
	for name, g := range map[string]*gw{"A": a, "B": b} {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", key); s != 200 {
			t.Fatalf("key issued on A, used on %s: %d, want 200", name, s)
		}
	}
	start := time.Now()
	if err := svcA.Revoke(ctx, id, "e2e"); err != nil {
		t.Fatal(err)
	}
	if s := a.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", key); s != 401 {
		t.Errorf("A, the next request after its own revocation: %d, want 401", s)
	}
	latency := refusedWithin(t, b, key, start, limit)
	t.Logf("revocation on A seen by B after %v (limit %v)", latency.Round(time.Millisecond), limit)
	if s := b.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", keep); s != 200 {
		t.Errorf("an unrevoked key on B: %d, want 200", s)
	}

	// A consumer-wide revocation through A's revocation list.
	globex, _ := a.issueKey(t, "globex-ops", nil, 0)
	if s := b.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", globex); s != 200 {
		t.Fatalf("globex key on B: %d", s)
	}
	start = time.Now()
	if err := a.srv.Revocations().Revoke(ctx, store.Revocation{Kind: store.RevokeConsumer, Subject: "globex-ops", Reason: "e2e"}); err != nil {
		t.Fatal(err)
	}
	latency = refusedWithin(t, b, globex, start, limit)
	t.Logf("consumer revocation on A seen by B after %v", latency.Round(time.Millisecond))

	// B restarts: what it learnt is in the store, not only in memory.
	b.srv.Close()
	b2 := startGatewayIn(t, t.TempDir(), text)
	for _, tc := range []struct {
		name, key string
		status    int
	}{{"revoked key", key, 401}, {"revoked consumer", globex, 401}, {"unrevoked key", keep, 200}} {
		if s := b2.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", tc.key); s != tc.status {
			t.Errorf("restarted B, %s: %d, want %d", tc.name, s, tc.status)
		}
	}
}

// TestIdentityRevocationRedis: with identity.revocation_poll at 10 s, only
// Redis pub/sub can carry a revocation to the other process within 1 s.
func TestIdentityRevocationRedis(t *testing.T) {
	t.Parallel()
	redisURL := os.Getenv("GATEHOUSE_TEST_REDIS")
	if redisURL == "" {
		t.Skip("GATEHOUSE_TEST_REDIS not set (e.g. redis://127.0.0.1:6379/0): pub/sub revocation test skipped")
	}
	dsn := freshPostgres(t)
	crossProcessRevocation(t, idConfig{Postgres: dsn, Redis: redisURL, Identity: "  revocation_poll: 10s\n"}, time.Second)
}

// TestIdentityRevocationStorePoll: Redis configured but dead (nothing
// listens on 127.0.0.1:1): the store poll alone (200 ms) carries the
// revocation within about a second.
func TestIdentityRevocationStorePoll(t *testing.T) {
	t.Parallel()
	dsn := freshPostgres(t)
	crossProcessRevocation(t, idConfig{Postgres: dsn, Redis: "redis://127.0.0.1:1/0", Identity: "  revocation_poll: 200ms\n"}, 1200*time.Millisecond)
}
