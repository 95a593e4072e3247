package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/storetest"
)

// testDSN returns the server to test against, skipping the test when none
// is configured, e.g.
// GATEHOUSE_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("GATEHOUSE_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("GATEHOUSE_TEST_POSTGRES not set: PostgreSQL conformance suite skipped")
	}
	return dsn
}

// newSchema returns a fresh random schema name and drops the schema
// (CASCADE) when the test ends. Open creates it.
func newSchema(t testing.TB) string {
	t.Helper()
	dsn := testDSN(t)
	b := make([]byte, 8)
	rand.Read(b)
	schema := "gh_test_" + hex.EncodeToString(b)
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
	return schema
}

// openSchema opens a store in schema and closes it when the test ends
// (before the schema is dropped: cleanups run last-registered first).
func openSchema(t testing.TB, schema string, opts ...Option) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, testDSN(t), append([]Option{WithSchema(schema)}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testDSN(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSchema(t, newSchema(t))
	})
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := t.Context()
	schema := newSchema(t)
	first := openSchema(t, schema)
	if err := first.CreateCredential(ctx, store.Credential{ID: "ck_keep", Kind: "apikey", Consumer: "c"}); err != nil {
		t.Fatal(err)
	}
	second := openSchema(t, schema) // must not fail on the existing schema
	if _, err := second.GetCredential(ctx, "ck_keep"); err != nil {
		t.Fatalf("data lost by a second Open: %v", err)
	}
	res, err := migrate(ctx, second.pool, schema)
	if err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if len(res) != 0 {
		t.Fatalf("migrate on an up-to-date schema applied %d migrations, want 0", len(res))
	}

	// Everything, goose's table included, lives in the selected schema.
	rows, err := second.pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename`, schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"audit_index_position", "audit_records", "credentials", "goose_db_version", "registry_apis", "registry_snapshots", "revocations"}
	if !slices.Equal(tables, want) {
		t.Fatalf("tables in %s = %v, want %v", schema, tables, want)
	}
	var applied int
	if err := second.pool.QueryRow(ctx,
		`SELECT count(*) FROM `+schema+`.goose_db_version WHERE version_id > 0 AND is_applied`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	files, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if applied != len(files) {
		t.Fatalf("goose_db_version has %d applied rows, want %d (one per file)", applied, len(files))
	}
}

// TestConcurrentOpen starts two stores on one new schema at once, as
// replicas booting together do: schema creation and migrations must not
// collide.
func TestConcurrentOpen(t *testing.T) {
	dsn := testDSN(t)
	schema := newSchema(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(t.Context(), dsn, WithSchema(schema))
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestSchemasIsolated(t *testing.T) {
	ctx := t.Context()
	a := openSchema(t, newSchema(t))
	b := openSchema(t, newSchema(t))
	if err := a.CreateCredential(ctx, store.Credential{ID: "ck_a", Kind: "apikey", Consumer: "c"}); err != nil {
		t.Fatal(err)
	}
	if err := a.AddRevocation(ctx, store.Revocation{Kind: store.RevokeToken, Subject: "jti"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.SaveSnapshot(ctx, store.RegistrySnapshot{Digest: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetCredential(ctx, "ck_a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("schema b sees a's credential: err = %v", err)
	}
	if revoked, err := b.IsRevoked(ctx, store.RevokeToken, "jti", time.Now()); err != nil || revoked {
		t.Errorf("schema b IsRevoked = %v, %v; want false", revoked, err)
	}
	if _, err := b.LatestSnapshot(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("schema b sees a's snapshot: err = %v", err)
	}
	// Same identity in both schemas: no conflict across them.
	if err := b.CreateCredential(ctx, store.Credential{ID: "ck_a", Kind: "apikey", Consumer: "other"}); err != nil {
		t.Errorf("schema b CreateCredential(ck_a): %v", err)
	}
	got, err := a.GetCredential(ctx, "ck_a")
	if err != nil || got.Consumer != "c" {
		t.Errorf("schema a credential = %+v, %v; want consumer c", got, err)
	}
}

// TestConnectionSettings checks the settings Open promises reach every
// connection of the pool, not just the first.
func TestConnectionSettings(t *testing.T) {
	ctx := t.Context()
	schema := newSchema(t)
	s := openSchema(t, schema, WithStatementTimeout(1500*time.Millisecond))
	if got := s.pool.Config().ConnConfig.ConnectTimeout; got != defaultConnectTimeout {
		t.Errorf("ConnectTimeout = %v, want %v", got, defaultConnectTimeout)
	}
	var conns []interface{ Release() }
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for i := range 3 {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var searchPath, timeout string
		if err := c.QueryRow(ctx, `SELECT current_setting('search_path'), current_setting('statement_timeout')`).
			Scan(&searchPath, &timeout); err != nil {
			t.Fatal(err)
		}
		if searchPath != schema || timeout != "1500ms" {
			t.Errorf("conn %d: search_path = %q, statement_timeout = %q; want %q, 1500ms", i, searchPath, timeout, schema)
		}
	}

	// The DSN's connect_timeout is kept; without options statement_timeout
	// defaults to 30 s.
	d := openSchema(t, schema)
	var timeout string
	if err := d.pool.QueryRow(ctx, `SHOW statement_timeout`).Scan(&timeout); err != nil || timeout != "30s" {
		t.Errorf("default statement_timeout = %q, %v; want 30s", timeout, err)
	}
	dsn := testDSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	e, err := Open(ctx, dsn+sep+"connect_timeout=3", WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := e.pool.Config().ConnConfig.ConnectTimeout; got != 3*time.Second {
		t.Errorf("ConnectTimeout with DSN connect_timeout=3 = %v, want 3s", got)
	}
}

// TestContextCancelsWaitingQuery checks a call stuck behind a lock returns
// when its ctx expires, instead of waiting for the statement timeout.
func TestContextCancelsWaitingQuery(t *testing.T) {
	ctx := t.Context()
	s := openSchema(t, newSchema(t))
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE revocations IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.IsRevoked(short, store.RevokeToken, "x", time.Now())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("IsRevoked behind a lock: err = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("IsRevoked took %v to honour a 200ms deadline", took)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.IsRevoked(ctx, store.RevokeToken, "x", time.Now()); err != nil {
		t.Fatalf("store unusable after a cancelled query: %v", err)
	}
}

// TestOpenRejects needs no server: bad options and DSNs fail before
// connecting, and the error never repeats a password.
func TestOpenRejects(t *testing.T) {
	ctx := t.Context()
	for _, schema := range []string{"Upper", "has-dash", "1digit", "a;drop", strings.Repeat("x", 64), "sp ace"} {
		if _, err := Open(ctx, "postgres://127.0.0.1:1/x", WithSchema(schema)); err == nil {
			t.Errorf("WithSchema(%q) accepted", schema)
		}
	}
	const secret = "s3cr3t-pw"
	for _, dsn := range []string{
		"postgres://user:" + secret + "@127.0.0.1:notaport/db",
		"host=127.0.0.1 password=" + secret + " port=notaport",
		"postgres://user:" + secret + "@127.0.0.1:1/db?connect_timeout=1", // parses; refused connection
	} {
		_, err := Open(ctx, dsn)
		if err == nil {
			t.Errorf("Open(%q) succeeded", dsn)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open error reveals the password: %v", err)
		}
	}
}

func BenchmarkIsRevoked(b *testing.B) {
	storetest.BenchmarkIsRevoked(b, openSchema(b, newSchema(b)))
}
