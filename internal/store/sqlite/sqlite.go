// Package sqlite is the embedded, single-node implementation of store.Store,
// built on the pure-Go modernc.org/sqlite driver so the binary stays
// CGO_ENABLED=0.
//
// SQLite admits one writer at a time. Rather than let concurrent writers
// collide inside SQLite (where a deferred transaction that upgrades from read
// to write fails with SQLITE_BUSY at once, without waiting for busy_timeout),
// the store keeps two pools: a single-connection writer pool, so database/sql
// queues writers in Go, and a pool of read-only connections that WAL lets run
// beside the writer. Writer transactions begin IMMEDIATE, so a second process
// on the same file waits in busy_timeout instead of failing mid-transaction.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// busyTimeout is how long a connection waits for another process's lock
// before SQLITE_BUSY surfaces. Within one process the writer pool already
// serialises writers, so this only matters when two processes share a file
// (for example `gatehouse keys` beside a running `gatehouse serve`).
const busyTimeout = 5 * time.Second

// migrateAttempts bounds the retries of a migration run that lost a race
// with another process migrating the same file.
const migrateAttempts = 5

// Store is a store.Store backed by one SQLite file.
type Store struct {
	write *sql.DB // exactly one connection; see the package comment
	read  *sql.DB // query_only connections, concurrent under WAL

	// isRevoked is prepared once (and per connection by database/sql) as
	// the one query the gateway may run per request; compiling it each
	// time costs about as much as running it.
	isRevoked *sql.Stmt

	// keys seals the sensitive columns (store.CredentialSealedColumns,
	// store.RevocationSealedColumns); nil stores them as given.
	keys *seal.KeyRing
}

// Option configures Open.
type Option func(*Store)

// WithKeyRing seals sensitive columns under k's active key and opens them
// with any key of k. Without it, a sealed value read back is an error.
func WithKeyRing(k *seal.KeyRing) Option { return func(s *Store) { s.keys = k } }

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path and applies any
// pending migrations. The parent directory is created with mode 0700 and the
// file with mode 0600, because it holds credential hashes; an existing file
// readable by group or others is tightened to 0600.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := prepareFile(abs); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	// Migrations run on their own short-lived handle: goose holds one
	// connection for its bookkeeping while running statements through the
	// *sql.DB, which would deadlock on the single-connection writer pool.
	migrateDB, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// Two processes opening a new file together can both find a migration
	// pending; the one that gets the write lock second fails inside its
	// migration transaction, which rolls back whole. Running goose again
	// then finds the migration applied and moves on.
	for attempt := 1; ; attempt++ {
		_, err = migrate(ctx, migrateDB)
		if err == nil || attempt == migrateAttempts || ctx.Err() != nil {
			break
		}
	}
	if cerr := migrateDB.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	write, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)

	read, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(readers)
	read.SetMaxIdleConns(readers)

	s := &Store{write: write, read: read}
	for _, o := range opts {
		o(s)
	}
	s.isRevoked, err = read.PrepareContext(ctx, `SELECT EXISTS (SELECT 1 FROM revocations
		WHERE kind = ? AND subject = ? AND (expires_at IS NULL OR expires_at >= ?))`)
	if err == nil {
		err = s.Ping(ctx)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// prepareFile creates the directory and an empty database file with private
// permissions before SQLite sees the path: SQLite would otherwise create the
// file with the process umask (typically world-readable). SQLite gives the
// -wal and -shm files the main file's permissions.
func prepareFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		err = f.Chmod(0o600)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restrict file mode: %w", err)
	}
	return nil
}

// dsn builds a URI filename whose _pragma parameters the driver runs on every
// new connection, so pooled connections opened later get the same settings
// as the first. The path is escaped so '?', '#' or '%' in it cannot be read
// as URI syntax.
func dsn(path string, writer bool) string {
	u := url.URL{Scheme: "file", Path: path}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	// NORMAL is durable across application crashes in WAL mode; only an OS
	// crash or power loss can roll back the last commits, which for a
	// gateway's registry and revocations is an acceptable trade for not
	// syncing on every commit.
	q.Add("_pragma", "synchronous(NORMAL)")
	if writer {
		q.Set("_txlock", "immediate")
	} else {
		// Defence in depth: a write routed to the reader pool by mistake
		// fails loudly instead of racing the writer.
		q.Add("_pragma", "query_only(ON)")
	}
	return u.String() + "?" + q.Encode()
}

// migrate applies the embedded migrations not yet recorded in the database.
// Re-running it on an up-to-date database applies nothing.
func migrate(ctx context.Context, db *sql.DB) ([]*goose.MigrationResult, error) {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	// The global registry holds Go migrations other packages might register;
	// this store's schema is exactly the embedded SQL files.
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return res, nil
}

// Ping checks both pools can reach the file.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes both pools.
func (s *Store) Close() error {
	var err error
	if s.isRevoked != nil {
		err = s.isRevoked.Close()
	}
	return errors.Join(err, s.read.Close(), s.write.Close())
}

// inWriteTx runs fn in an IMMEDIATE transaction on the writer connection.
// fn must not use s.write itself: the one connection is already taken.
func (s *Store) inWriteTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, ignoreDone(tx.Rollback()))
	}
	return tx.Commit()
}

// ignoreDone drops the error database/sql reports when a transaction was
// already rolled back because its context ended.
func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

// SaveSnapshot implements store.RegistryStore.
func (s *Store) SaveSnapshot(ctx context.Context, snap store.RegistrySnapshot) (int64, bool, error) {
	if snap.Digest == "" {
		return 0, false, errors.New("sqlite: save snapshot: empty digest")
	}
	if err := store.CheckUniqueAPIs(snap.APIs); err != nil {
		return 0, false, fmt.Errorf("sqlite: save snapshot: %w", err)
	}
	createdAt := snap.CreatedAt
	if createdAt.IsZero() {
		createdAt = time.Now()
	}
	var (
		id      int64
		created bool
	)
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		var latest string
		err := tx.QueryRowContext(ctx,
			`SELECT id, digest FROM registry_snapshots ORDER BY id DESC LIMIT 1`).Scan(&id, &latest)
		switch {
		case err == nil && latest == snap.Digest:
			return nil
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return err
		}
		err = tx.QueryRowContext(ctx,
			`INSERT INTO registry_snapshots (digest, created_at) VALUES (?, ?) RETURNING id`,
			snap.Digest, micros(createdAt)).Scan(&id)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO registry_apis (
			snapshot_id, name, version, owner_team, owner_contact, exposure, sensitivity,
			lifecycle, reviewed_on, reviewed_by, host, base_path, upstream, spec_digest, operations
		) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, a := range snap.APIs {
			if _, err := stmt.ExecContext(ctx, id, a.Name, a.Version, a.OwnerTeam, a.OwnerContact,
				a.Exposure, a.Sensitivity, a.Lifecycle, a.ReviewedOn, a.ReviewedBy, a.Host,
				a.BasePath, a.Upstream, a.SpecDigest, a.Operations); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("sqlite: save snapshot: %w", err)
	}
	return id, created, nil
}

// LatestSnapshot implements store.RegistryStore. The newest snapshot is the
// one with the highest ID, not the latest CreatedAt: wall clocks can step
// back, insertion order cannot.
func (s *Store) LatestSnapshot(ctx context.Context) (store.RegistrySnapshot, error) {
	// One read transaction so the snapshot row and its APIs come from the
	// same database state even if a writer commits in between.
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.RegistrySnapshot{}, fmt.Errorf("sqlite: latest snapshot: %w", err)
	}
	defer tx.Rollback()
	var (
		snap      store.RegistrySnapshot
		createdAt int64
	)
	err = tx.QueryRowContext(ctx,
		`SELECT id, digest, created_at FROM registry_snapshots ORDER BY id DESC LIMIT 1`).
		Scan(&snap.ID, &snap.Digest, &createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return store.RegistrySnapshot{}, fmt.Errorf("sqlite: latest snapshot: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.RegistrySnapshot{}, fmt.Errorf("sqlite: latest snapshot: %w", err)
	}
	snap.CreatedAt = fromMicros(createdAt)
	snap.APIs, err = listAPIs(ctx, tx, `?`, snap.ID)
	if err != nil {
		return store.RegistrySnapshot{}, fmt.Errorf("sqlite: latest snapshot: %w", err)
	}
	return snap, nil
}

// ListAPIs implements store.RegistryStore. With no snapshot yet it returns
// an empty list, not ErrNotFound: an empty inventory is a valid answer.
func (s *Store) ListAPIs(ctx context.Context) ([]store.APIRecord, error) {
	apis, err := listAPIs(ctx, s.read, `(SELECT max(id) FROM registry_snapshots)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list apis: %w", err)
	}
	return apis, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// listAPIs returns the APIs of the snapshot that the SQL expression
// snapshot (a bind parameter or a subquery) names.
func listAPIs(ctx context.Context, q querier, snapshot string, args ...any) ([]store.APIRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, version, owner_team, owner_contact, exposure,
		sensitivity, lifecycle, reviewed_on, reviewed_by, host, base_path, upstream, spec_digest, operations
		FROM registry_apis WHERE snapshot_id = `+snapshot+` ORDER BY name, version`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var apis []store.APIRecord
	for rows.Next() {
		var a store.APIRecord
		if err := rows.Scan(&a.Name, &a.Version, &a.OwnerTeam, &a.OwnerContact, &a.Exposure,
			&a.Sensitivity, &a.Lifecycle, &a.ReviewedOn, &a.ReviewedBy, &a.Host, &a.BasePath,
			&a.Upstream, &a.SpecDigest, &a.Operations); err != nil {
			return nil, err
		}
		apis = append(apis, a)
	}
	return apis, rows.Err()
}

// CreateCredential implements store.CredentialStore.
func (s *Store) CreateCredential(ctx context.Context, c store.Credential) error {
	if c.ID == "" {
		return errors.New("sqlite: create credential: empty id")
	}
	scopes, err := encodeScopes(c.Scopes)
	if err != nil {
		return fmt.Errorf("sqlite: create credential: %w", err)
	}
	createdAt := c.CreatedAt
	if createdAt.IsZero() {
		createdAt = time.Now()
	}
	hash := c.Hash
	if hash == nil {
		hash = []byte{}
	}
	sc, err := store.SealCredential(s.keys, c)
	if err != nil {
		return fmt.Errorf("sqlite: create credential: %w", err)
	}
	// ON CONFLICT DO NOTHING rather than matching a constraint error code:
	// zero rows affected is the conflict, whatever the driver's error shape.
	res, err := s.write.ExecContext(ctx, `INSERT INTO credentials (
		id, kind, consumer, partner, hash, scopes, created_at, created_by,
		expires_at, revoked_at, revoked_why, last_used_at, last_used_ip, metadata
	) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		c.ID, c.Kind, c.Consumer, c.Partner, hash, scopes, micros(createdAt), sc.CreatedBy,
		nullMicros(c.ExpiresAt), nullMicros(c.RevokedAt), sc.RevokedWhy,
		nullMicros(c.LastUsedAt), sc.LastUsedIP, sc.Metadata)
	if err != nil {
		return fmt.Errorf("sqlite: create credential: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: create credential: %w", err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: create credential %q: %w", c.ID, store.ErrConflict)
	}
	return nil
}

const credentialColumns = `id, kind, consumer, partner, hash, scopes, created_at, created_by,
	expires_at, revoked_at, revoked_why, last_used_at, last_used_ip, metadata`

type scanner interface{ Scan(dest ...any) error }

func (s *Store) scanCredential(row scanner) (store.Credential, error) {
	var (
		c                                store.Credential
		sc                               store.SealedCredential
		scopes                           string
		createdAt                        int64
		expiresAt, revokedAt, lastUsedAt sql.NullInt64
	)
	if err := row.Scan(&c.ID, &c.Kind, &c.Consumer, &c.Partner, &c.Hash, &scopes, &createdAt,
		&sc.CreatedBy, &expiresAt, &revokedAt, &sc.RevokedWhy, &lastUsedAt, &sc.LastUsedIP, &sc.Metadata); err != nil {
		return store.Credential{}, err
	}
	if err := store.OpenCredential(s.keys, &c, sc); err != nil {
		return store.Credential{}, err
	}
	var err error
	if c.Scopes, err = decodeScopes(scopes); err != nil {
		return store.Credential{}, err
	}
	c.CreatedAt = fromMicros(createdAt)
	c.ExpiresAt = fromNullMicros(expiresAt)
	c.RevokedAt = fromNullMicros(revokedAt)
	c.LastUsedAt = fromNullMicros(lastUsedAt)
	return c, nil
}

// GetCredential implements store.CredentialStore.
func (s *Store) GetCredential(ctx context.Context, id string) (store.Credential, error) {
	c, err := s.scanCredential(s.read.QueryRowContext(ctx,
		`SELECT `+credentialColumns+` FROM credentials WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Credential{}, fmt.Errorf("sqlite: get credential %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Credential{}, fmt.Errorf("sqlite: get credential %q: %w", id, err)
	}
	return c, nil
}

// ListCredentials implements store.CredentialStore.
func (s *Store) ListCredentials(ctx context.Context, f store.CredentialFilter) ([]store.Credential, error) {
	q := `SELECT ` + credentialColumns + ` FROM credentials WHERE 1 = 1`
	var args []any
	if f.Consumer != "" {
		q += ` AND consumer = ?`
		args = append(args, f.Consumer)
	}
	if f.Partner != "" {
		q += ` AND partner = ?`
		args = append(args, f.Partner)
	}
	if !f.IncludeRevoked {
		q += ` AND revoked_at IS NULL`
	}
	q += ` ORDER BY created_at, id`
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list credentials: %w", err)
	}
	defer rows.Close()
	var out []store.Credential
	for rows.Next() {
		c, err := s.scanCredential(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list credentials: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list credentials: %w", err)
	}
	return out, nil
}

// RevokeCredential implements store.CredentialStore. A zero at means now.
func (s *Store) RevokeCredential(ctx context.Context, id string, at time.Time, reason string) error {
	if at.IsZero() {
		at = time.Now()
	}
	reason, err := s.keys.SealString(reason, store.CredentialAAD("revoked_why", id))
	if err != nil {
		return fmt.Errorf("sqlite: revoke credential %q: %w", id, err)
	}
	err = s.updateCredential(ctx, `UPDATE credentials SET revoked_at = ?, revoked_why = ?
		WHERE id = ? AND revoked_at IS NULL`, id, micros(at), reason, id)
	if err != nil {
		return fmt.Errorf("sqlite: revoke credential %q: %w", id, err)
	}
	return nil
}

// TouchCredential implements store.CredentialStore. Touches arrive out of
// order from asynchronous workers, so the update is conditional on the new
// time being later; an equal time keeps the first IP recorded.
func (s *Store) TouchCredential(ctx context.Context, id string, at time.Time, sourceIP string) error {
	if at.IsZero() {
		return fmt.Errorf("sqlite: touch credential %q: zero time", id)
	}
	t := micros(at)
	sourceIP, err := s.keys.SealString(sourceIP, store.CredentialAAD("last_used_ip", id))
	if err != nil {
		return fmt.Errorf("sqlite: touch credential %q: %w", id, err)
	}
	err = s.updateCredential(ctx, `UPDATE credentials SET last_used_at = ?, last_used_ip = ?
		WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`, id, t, sourceIP, id, t)
	if err != nil {
		return fmt.Errorf("sqlite: touch credential %q: %w", id, err)
	}
	return nil
}

// updateCredential runs a conditional UPDATE of credential id. When it
// changes nothing, the credential either does not exist (ErrNotFound) or the
// condition kept it as it was (nil); the check runs in the same transaction
// so a concurrent create cannot slip between the two.
func (s *Store) updateCredential(ctx context.Context, query, id string, args ...any) error {
	return s.inWriteTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM credentials WHERE id = ?`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
}

// AddRevocation implements store.RevocationStore. When an entry for (Kind,
// Subject) exists and r expires later, the entry is replaced by r under a new
// Seq, so replicas polling RevocationsSince see the extension. Otherwise the
// existing entry is kept as it is.
func (s *Store) AddRevocation(ctx context.Context, r store.Revocation) error {
	if r.Kind == "" || r.Subject == "" {
		return errors.New("sqlite: add revocation: empty kind or subject")
	}
	createdAt := r.CreatedAt
	if createdAt.IsZero() {
		createdAt = time.Now()
	}
	newExp := nullMicros(r.ExpiresAt)
	reason, createdBy, err := store.SealRevocation(s.keys, r)
	if err != nil {
		return fmt.Errorf("sqlite: add revocation: %w", err)
	}
	err = s.inWriteTx(ctx, func(tx *sql.Tx) error {
		var oldExp sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT expires_at FROM revocations WHERE kind = ? AND subject = ?`,
			r.Kind, r.Subject).Scan(&oldExp)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case !store.ExpiresLater(fromNullMicros(oldExp), r.ExpiresAt):
			return nil
		default:
			// Delete and insert rather than update in place: a new row gets
			// a fresh AUTOINCREMENT seq that can never collide with one
			// handed out before.
			if _, err := tx.ExecContext(ctx, `DELETE FROM revocations WHERE kind = ? AND subject = ?`,
				r.Kind, r.Subject); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO revocations
			(kind, subject, reason, created_at, expires_at, created_by) VALUES (?, ?, ?, ?, ?, ?)`,
			r.Kind, r.Subject, reason, micros(createdAt), newExp, createdBy)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: add revocation: %w", err)
	}
	return nil
}

// IsRevoked implements store.RevocationStore. An entry counts as revoked up
// to and including its ExpiresAt instant (fail closed at the boundary), the
// same rule PurgeExpiredRevocations uses to keep it.
func (s *Store) IsRevoked(ctx context.Context, kind, subject string, now time.Time) (bool, error) {
	var revoked bool
	err := s.isRevoked.QueryRowContext(ctx, kind, subject, micros(now)).Scan(&revoked)
	if err != nil {
		return false, fmt.Errorf("sqlite: is revoked: %w", err)
	}
	return revoked, nil
}

// RevocationsSince implements store.RevocationStore.
func (s *Store) RevocationsSince(ctx context.Context, seq int64) ([]store.Revocation, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT seq, kind, subject, reason, created_at, expires_at, created_by
		FROM revocations WHERE seq > ? ORDER BY seq`, seq)
	if err != nil {
		return nil, fmt.Errorf("sqlite: revocations since %d: %w", seq, err)
	}
	defer rows.Close()
	var out []store.Revocation
	for rows.Next() {
		var (
			r         store.Revocation
			createdAt int64
			expiresAt sql.NullInt64
		)
		if err := rows.Scan(&r.Seq, &r.Kind, &r.Subject, &r.Reason, &createdAt, &expiresAt, &r.CreatedBy); err != nil {
			return nil, fmt.Errorf("sqlite: revocations since %d: %w", seq, err)
		}
		r.CreatedAt = fromMicros(createdAt)
		r.ExpiresAt = fromNullMicros(expiresAt)
		if err := store.OpenRevocation(s.keys, &r); err != nil {
			return nil, fmt.Errorf("sqlite: revocations since %d: %w", seq, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: revocations since %d: %w", seq, err)
	}
	return out, nil
}

// PurgeExpiredRevocations implements store.RevocationStore.
func (s *Store) PurgeExpiredRevocations(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.write.ExecContext(ctx,
		`DELETE FROM revocations WHERE expires_at IS NOT NULL AND expires_at < ?`, micros(now))
	if err != nil {
		return 0, fmt.Errorf("sqlite: purge revocations: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: purge revocations: %w", err)
	}
	return n, nil
}

// micros is t as UTC microseconds since the epoch, the unit every time
// column uses.
func micros(t time.Time) int64 { return store.NormalizeTime(t).UnixMicro() }

// nullMicros maps the zero time to NULL.
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(t), Valid: true}
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fromNullMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromMicros(n.Int64)
}

// encodeScopes stores scopes as a JSON array; nil and empty both become
// "[]" so the column is always an array for JSON queries.
func encodeScopes(scopes []string) (string, error) {
	if len(scopes) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(scopes)
	if err != nil {
		return "", fmt.Errorf("encode scopes: %w", err)
	}
	return string(b), nil
}

// decodeScopes returns nil for an empty array, mirroring encodeScopes.
func decodeScopes(s string) ([]string, error) {
	var scopes []string
	if err := json.Unmarshal([]byte(s), &scopes); err != nil {
		return nil, fmt.Errorf("decode scopes: %w", err)
	}
	if len(scopes) == 0 {
		return nil, nil
	}
	return scopes, nil
}
