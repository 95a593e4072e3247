package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/storetest"
)

func openTemp(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTemp(t, filepath.Join(t.TempDir(), "gatehouse.db"))
	})
}

func TestReopenKeepsDataAndPermissions(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "gatehouse.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	cred := store.Credential{ID: "ck_keep", Kind: "apikey", Consumer: "c", Hash: []byte("h"),
		Scopes: []string{"a"}, CreatedAt: time.Now()}
	if err := s.CreateCredential(ctx, cred); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRevocation(ctx, store.Revocation{Kind: store.RevokeToken, Subject: "jti"}); err != nil {
		t.Fatal(err)
	}
	snapID, _, err := s.SaveSnapshot(ctx, store.RegistrySnapshot{Digest: "d",
		APIs: []store.APIRecord{{Name: "orders", Version: "v1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	entries, err := filepath.Glob(path + "*") // the file and any -wal/-shm left
	if err != nil || len(entries) == 0 {
		t.Fatalf("glob %s: %v %v", path, entries, err)
	}
	for _, p := range entries {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v (%v), want 0600", filepath.Base(p), fi.Mode().Perm(), err)
		}
	}

	s = openTemp(t, path)
	got, err := s.GetCredential(ctx, "ck_keep")
	if err != nil || got.Consumer != "c" {
		t.Fatalf("after reopen GetCredential = %+v, %v", got, err)
	}
	if revoked, err := s.IsRevoked(ctx, store.RevokeToken, "jti", time.Now()); err != nil || !revoked {
		t.Fatalf("after reopen IsRevoked = %v, %v", revoked, err)
	}
	if id, created, err := s.SaveSnapshot(ctx, store.RegistrySnapshot{Digest: "d"}); err != nil || created || id != snapID {
		t.Fatalf("after reopen SaveSnapshot(same digest) = %d, %v, %v; want %d, false", id, created, err, snapID)
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	for i := range 2 { // a second Open must not fail on the existing schema
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := migrate(ctx, db)
	if err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if len(res) != 0 {
		t.Fatalf("migrate on an up-to-date database applied %d migrations, want 0", len(res))
	}
	var applied int
	if err := db.QueryRowContext(ctx,
		`SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if applied != len(entries) {
		t.Fatalf("goose_db_version has %d applied rows, want %d (one per file)", applied, len(entries))
	}
}

func TestExistingFileIsTightened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loose.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // umask-proof
		t.Fatal(err)
	}
	openTemp(t, path)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

func TestPathNeedingEscapes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir#1")
	path := filepath.Join(dir, "gh?mode=ro%20.db")
	s := openTemp(t, path)
	if err := s.AddRevocation(t.Context(), store.Revocation{Kind: store.RevokeToken, Subject: "x"}); err != nil {
		t.Fatalf("write through escaped path: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the literal path: %v", err)
	}
}

// TestPragmasOnEveryConnection checks the DSN settings reach connections the
// pools open later, not just the first one.
func TestPragmasOnEveryConnection(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t, filepath.Join(t.TempDir(), "gatehouse.db"))
	check := func(name string, db *sql.DB, queryOnly int) {
		// Hold several connections at once so the pool must open new ones.
		var conns []*sql.Conn
		for range 3 {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			if db == s.write {
				break // one connection by design
			}
		}
		for i, c := range conns {
			for pragma, want := range map[string]string{
				"journal_mode": "wal", "foreign_keys": "1", "synchronous": "1",
				"busy_timeout": fmt.Sprint(busyTimeout.Milliseconds()), "query_only": fmt.Sprint(queryOnly),
			} {
				var got string
				if err := c.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s conn %d: PRAGMA %s = %s, want %s", name, i, pragma, got, want)
				}
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	check("writer", s.write, 0)
	check("reader", s.read, 1)
	if s.write.Stats().MaxOpenConnections != 1 {
		t.Errorf("writer pool max = %d, want 1", s.write.Stats().MaxOpenConnections)
	}
}

// TestTwoStoresOneFile runs writers from two Store values on one file, the
// way `gatehouse keys` writes beside a running `gatehouse serve`: each has its
// own writer connection, so SQLite's locking (not the pool) arbitrates, and
// busy_timeout with IMMEDIATE transactions must keep SQLITE_BUSY from
// surfacing.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "shared.db")
	stores := []*Store{openTemp(t, path), openTemp(t, path)}
	const perWorker = 25
	var wg sync.WaitGroup
	errs := make(chan error, 4*perWorker)
	for w := range 4 {
		s := stores[w%2]
		wg.Go(func() {
			for i := range perWorker {
				id := fmt.Sprintf("ck_%d_%d", w, i)
				err := s.CreateCredential(ctx, store.Credential{ID: id, Kind: "apikey", Consumer: "c", CreatedAt: time.Now()})
				if err == nil {
					err = s.AddRevocation(ctx, store.Revocation{Kind: store.RevokeToken, Subject: id,
						ExpiresAt: time.Now().Add(time.Duration(w) * time.Hour)})
				}
				if err == nil {
					err = s.TouchCredential(ctx, id, time.Now(), "192.0.2.1")
				}
				if err == nil {
					_, _, err = s.SaveSnapshot(ctx, store.RegistrySnapshot{Digest: fmt.Sprint(i % 3)})
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all, err := stores[0].ListCredentials(ctx, store.CredentialFilter{})
	if err != nil || len(all) != 4*perWorker {
		t.Fatalf("ListCredentials = %d, %v; want %d", len(all), err, 4*perWorker)
	}
	revs, err := stores[1].RevocationsSince(ctx, 0)
	if err != nil || len(revs) != 4*perWorker {
		t.Fatalf("RevocationsSince = %d, %v; want %d", len(revs), err, 4*perWorker)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.Context(), ""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), filepath.Join(file, "sub", "gh.db")); err == nil {
		t.Error("Open under a regular file succeeded")
	}
	notDB := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(notDB, []byte("this is not an sqlite database, not at all, no"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), notDB); err == nil {
		t.Error("Open of a non-database file succeeded")
	}
}

func BenchmarkIsRevoked(b *testing.B) {
	storetest.BenchmarkIsRevoked(b, openTemp(b, filepath.Join(b.TempDir(), "bench.db")))
}

// TestConcurrentOpen opens one new file from several goroutines at once, as
// two processes starting together would: each has its own connections, so
// only SQLite's locking orders their migrations.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "race.db")
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			s, err := Open(t.Context(), path)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkTakeQuota(b *testing.B) {
	storetest.BenchmarkTakeQuota(b, openTemp(b, filepath.Join(b.TempDir(), "bench.db")))
}
