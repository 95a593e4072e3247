package cli

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gatehouse/gatehouse/internal/seal"
)

func TestGenDataKey(t *testing.T) {
	out, _, err := run(t, "keys", "gen-data-key")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seal.ParseKeyRing(out); err != nil {
		t.Fatalf("stdout is not a data key: %v (%q)", err, out)
	}
	path := filepath.Join(t.TempDir(), "d", "data.key")
	if _, _, err := run(t, "keys", "gen-data-key", "--out", path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if _, _, err := run(t, "keys", "gen-data-key", "--out", path); err == nil {
		t.Error("an existing key file was overwritten without --rotate")
	}
	first, _ := seal.Load(path, "", nil)
	if _, _, err := run(t, "keys", "gen-data-key", "--out", path, "--rotate"); err != nil {
		t.Fatal(err)
	}
	ring, err := seal.Load(path, "", nil)
	if err != nil || len(ring.IDs()) != 2 || ring.IDs()[1] != first.ActiveID() {
		t.Fatalf("after --rotate: %v, %v; want the new key first and the old one kept", ring.IDs(), err)
	}
}

// dataKeyStore is one store backend the rotation test runs on.
type dataKeyStore struct {
	name  string
	store func(t *testing.T, dir string) (yaml string, db *sql.DB)
}

func TestRotateDataKey(t *testing.T) {
	backends := []dataKeyStore{{"sqlite", func(t *testing.T, dir string) (string, *sql.DB) {
		db, err := sql.Open("sqlite", filepath.Join(dir, "data", "g.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return "store: {sqlite: data/g.db, encryption: {key_file: data.key}}\n", db
	}}}
	if dsn := os.Getenv("GATEHOUSE_TEST_POSTGRES"); dsn != "" {
		backends = append(backends, dataKeyStore{"postgres", func(t *testing.T, dir string) (string, *sql.DB) {
			return pgSchemaStore(t, dsn)
		}})
	} else {
		t.Log("GATEHOUSE_TEST_POSTGRES not set: rotate-data-key tested on SQLite only")
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testRotateDataKey(t, b) })
	}
}

// pgSchemaStore creates a private schema (dropped at the end) and returns
// the store line selecting it through search_path.
func pgSchemaStore(t *testing.T, dsn string) (string, *sql.DB) {
	ctx := context.Background()
	var rb [6]byte
	rand.Read(rb[:])
	schema := "gh_cli_" + hex.EncodeToString(rb[:])
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("GATEHOUSE_TEST_POSTGRES is set but unreachable: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	cfgDSN := u.String()
	cc, err := pgx.ParseConfig(cfgDSN)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cc)
	t.Cleanup(func() {
		db.Close()
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			c.Exec(context.Background(), `DROP SCHEMA `+schema+` CASCADE`)
			c.Close(context.Background())
		}
	})
	return "store: {postgres: \"" + cfgDSN + "\", encryption: {key_file: data.key}}\n", db
}

func testRotateDataKey(t *testing.T, b dataKeyStore) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "pepper"), keysTestPepper+"\n")
	keyPath := filepath.Join(dir, "data.key")
	if _, _, err := run(t, "keys", "gen-data-key", "--out", keyPath); err != nil {
		t.Fatal(err)
	}
	storeLine, db := b.store(t, dir)
	cfg := filepath.Join(dir, "gatehouse.yaml")
	write(t, cfg, `version: 1
listen: {tls: {dev_cert: true}}
`+storeLine+`identity: {pepper_file: pepper}
partners: [{name: acme}]
consumers: [{name: acme-billing, partner: acme, scopes: ["orders:read"]}]
`)
	var ids []string
	for i := range 7 {
		args := []string{"--consumer", "acme-billing", "--created-by", "alice.operator"}
		if i == 1 {
			args = append(args, "--meta", "owner=jane@acme.example", "--meta", "ticket=SEC-42")
		}
		key, _ := issueKey(t, cfg, args...)
		id := key[4:20]
		ids = append(ids, id)
		if i%2 == 0 {
			if _, errOut, err := run(t, "keys", "revoke", "-c", cfg, id, "--reason", "leaked in ticket 4711"); err != nil {
				t.Fatalf("revoke: %v %s", err, errOut)
			}
		}
	}
	oldRing, _ := seal.Load(keyPath, "", nil)
	checkRaw(t, db, oldRing.ActiveID())

	if _, _, err := run(t, "keys", "gen-data-key", "--out", keyPath, "--rotate"); err != nil {
		t.Fatal(err)
	}
	newRing, _ := seal.Load(keyPath, "", nil)
	out, errOut, err := run(t, "keys", "rotate-data-key", "-c", cfg, "--batch", "3")
	if err != nil {
		t.Fatalf("rotate-data-key: %v\n%s", err, errOut)
	}
	// 7 created_by + 4 revoked_why + 1 metadata, 4 revocation reasons + 4 created_by.
	if !strings.Contains(out, "20 sealed values checked, 20 re-encrypted") {
		t.Errorf("first run: %q", out)
	}
	checkRaw(t, db, newRing.ActiveID())
	out, _, err = run(t, "keys", "rotate-data-key", "-c", cfg)
	if err != nil || !strings.Contains(out, "20 sealed values checked, 0 re-encrypted") {
		t.Errorf("second run (idempotent): %q, %v", out, err)
	}

	// Drop the old key: everything still reads.
	text, _ := os.ReadFile(keyPath)
	lines := strings.Split(string(text), "\n")
	write(t, keyPath, lines[0]+"\n"+lines[1]+"\n")
	os.Chmod(keyPath, 0o600)
	out, errOut, err = run(t, "keys", "list", "-c", cfg, "--all", "-o", "json")
	if err != nil || !strings.Contains(out, "alice.operator") || !strings.Contains(out, "leaked in ticket 4711") ||
		!strings.Contains(out, `"owner": "jane@acme.example"`) {
		t.Errorf("list with the new key only: %v %s\n%s", err, errOut, out)
	}
	// A key that sealed nothing in this store is refused with a clear error.
	other, _ := seal.GenerateKey()
	write(t, keyPath, other+"\n")
	os.Chmod(keyPath, 0o600)
	if _, errOut, err := run(t, "keys", "list", "-c", cfg); err == nil || !strings.Contains(err.Error()+errOut, "store.encryption") {
		t.Errorf("wrong key: err %v, stderr %q; want an error naming store.encryption", err, errOut)
	}
}

// checkRaw asserts every sensitive column value is sealed under kid.
func checkRaw(t *testing.T, db *sql.DB, kid string) {
	t.Helper()
	for _, q := range []string{
		`SELECT created_by FROM credentials`, `SELECT revoked_why FROM credentials`,
		`SELECT reason FROM revocations`, `SELECT created_by FROM revocations`, `SELECT metadata FROM credentials`,
	} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var v string
			rows.Scan(&v)
			if v == "" {
				continue
			}
			if id, _, err := seal.Parse(v); err != nil || id != kid || strings.Contains(v, "alice") || strings.Contains(v, "4711") || strings.Contains(v, "jane") {
				t.Errorf("%s: %.40q not sealed under %s", q, v, kid)
			}
		}
		rows.Close()
	}
}
