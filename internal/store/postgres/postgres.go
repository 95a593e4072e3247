// Package postgres is the cluster implementation of store.Store, shared by
// every gateway replica.
//
// Queries go through pgxpool directly, not database/sql: the native pool
// caches prepared statements per connection, uses the binary protocol for
// timestamptz and bytea, and honours ctx on acquire and on every query
// (cancelling the statement server-side). Goose needs a *sql.DB, so Open
// wraps the same pool with stdlib.OpenDBFromPool just for migrations; one
// pool, one set of connection settings (search_path included), no second
// set of connections to size.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Defaults applied when the DSN does not set its own value.
const (
	// defaultConnectTimeout bounds dialling plus authentication, so a
	// black-holed database address fails Open (and /readyz) quickly instead
	// of hanging on the OS's TCP timeout.
	defaultConnectTimeout = 10 * time.Second
	// defaultStatementTimeout is a server-side backstop for callers whose
	// ctx has no deadline: no statement holds a connection or a table lock
	// (see AddRevocation) for longer.
	defaultStatementTimeout = 30 * time.Second
)

// Store is a store.Store backed by a PostgreSQL database (and schema).
type Store struct {
	pool *pgxpool.Pool
	// keys seals the sensitive columns (store.CredentialSealedColumns,
	// store.RevocationSealedColumns); nil stores them as given.
	keys *seal.KeyRing
}

var _ store.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	schema           string
	statementTimeout time.Duration
	keys             *seal.KeyRing
}

// WithKeyRing seals sensitive columns under k's active key and opens them
// with any key of k. Without it, a sealed value read back is an error.
func WithKeyRing(k *seal.KeyRing) Option {
	return func(o *options) { o.keys = k }
}

// WithSchema makes the store create the schema name if it does not exist and
// keep everything in it, goose's version table included: search_path is set
// to name alone on every connection. Several independent stores (tenants,
// test runs) can so share one database. name must be a plain lower-case SQL
// identifier ([a-z_][a-z0-9_]*, at most 63 bytes).
func WithSchema(name string) Option {
	return func(o *options) { o.schema = name }
}

// WithStatementTimeout sets the server-side statement_timeout for every
// connection, overriding the DSN's and the 30 s default. Zero disables it.
func WithStatementTimeout(d time.Duration) Option {
	return func(o *options) { o.statementTimeout = d }
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects to the database at dsn (a postgres:// URL or key=value
// string, as libpq accepts), creates the schema chosen by WithSchema and
// applies any pending migrations. Pool size and other pgxpool settings can
// be given in the DSN (pool_max_conns=...).
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{statementTimeout: -1}
	for _, opt := range opts {
		opt(&o)
	}
	if o.schema != "" && !schemaName.MatchString(o.schema) {
		return nil, fmt.Errorf("postgres: open: schema %q: want a lower-case identifier matching %s", o.schema, schemaName)
	}

	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts passwords only on a best-effort basis, and a DSN that
		// fails to parse is exactly the case where it may not find one.
		return nil, errors.New("postgres: open: invalid DSN (details withheld as it may contain a password)")
	}
	cc := cfg.ConnConfig
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = defaultConnectTimeout
	}
	switch {
	case o.statementTimeout >= 0:
		cc.RuntimeParams["statement_timeout"] = strconv.FormatInt(o.statementTimeout.Milliseconds(), 10)
	case cc.RuntimeParams["statement_timeout"] == "":
		cc.RuntimeParams["statement_timeout"] = strconv.FormatInt(defaultStatementTimeout.Milliseconds(), 10)
	}
	if o.schema != "" {
		// A startup parameter, so every connection the pool ever opens has
		// it before its first query, including those goose uses.
		cc.RuntimeParams["search_path"] = o.schema
	}

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	s := &Store{pool: pool, keys: o.keys}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if o.schema != "" {
		if err := createSchema(ctx, pool, o.schema); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres: open: create schema %s: %w", o.schema, err)
		}
	}
	if _, err := migrate(ctx, pool, o.schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return s, nil
}

// createSchema creates schema if missing. Two replicas starting together
// can both pass IF NOT EXISTS and then collide on the catalog's unique
// index; the loser's error means the schema exists, which is all we want.
func createSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	_, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize())
	if err != nil {
		var exists bool
		if qerr := pool.QueryRow(ctx,
			`SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); qerr == nil && exists {
			return nil
		}
	}
	return err
}

// migrate applies the embedded migrations not yet recorded in schema's
// goose_db_version table. Re-running it on an up-to-date schema applies
// nothing.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) ([]*goose.MigrationResult, error) {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	table := goose.DefaultTablename
	if schema != "" {
		// Qualified, so the version table's location does not depend on
		// search_path. schema was validated as a plain identifier.
		table = schema + "." + table
	}
	// Replicas starting together must not run the same migration twice: a
	// session advisory lock serialises them. Its key is per schema, so
	// stores in different schemas do not wait for each other.
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(lockID(schema)),
		lock.WithLockTimeout(1, 120),
	)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close() // does not close the pool
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(table),
		goose.WithSessionLocker(locker),
		// The global registry holds Go migrations other packages might
		// register; this store's schema is exactly the embedded SQL files.
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return res, nil
}

// lockID derives the migration advisory-lock key from the schema name.
func lockID(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("gatehouse/migrate/" + schema))
	return int64(h.Sum64())
}

// Ping checks a connection can be acquired and answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be released.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// SaveSnapshot implements store.RegistryStore.
func (s *Store) SaveSnapshot(ctx context.Context, snap store.RegistrySnapshot) (int64, bool, error) {
	if snap.Digest == "" {
		return 0, false, errors.New("postgres: save snapshot: empty digest")
	}
	if err := store.CheckUniqueAPIs(snap.APIs); err != nil {
		return 0, false, fmt.Errorf("postgres: save snapshot: %w", err)
	}
	createdAt := snap.CreatedAt
	if createdAt.IsZero() {
		createdAt = time.Now()
	}
	var (
		id      int64
		created bool
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Replicas reloading the same config at once would both see the old
		// latest digest and both insert. EXCLUSIVE mode blocks other writers
		// of this table until commit and still lets readers through.
		if _, err := tx.Exec(ctx, `LOCK TABLE registry_snapshots IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		var latest string
		err := tx.QueryRow(ctx,
			`SELECT id, digest FROM registry_snapshots ORDER BY id DESC LIMIT 1`).Scan(&id, &latest)
		switch {
		case err == nil && latest == snap.Digest:
			return nil
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if err := tx.QueryRow(ctx,
			`INSERT INTO registry_snapshots (digest, created_at) VALUES ($1, $2) RETURNING id`,
			snap.Digest, ts(createdAt)).Scan(&id); err != nil {
			return err
		}
		var b pgx.Batch
		for _, a := range snap.APIs {
			b.Queue(`INSERT INTO registry_apis (
				snapshot_id, name, version, owner_team, owner_contact, exposure, sensitivity,
				lifecycle, reviewed_on, reviewed_by, host, base_path, upstream, spec_digest, operations
			) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
				id, a.Name, a.Version, a.OwnerTeam, a.OwnerContact, a.Exposure, a.Sensitivity,
				a.Lifecycle, a.ReviewedOn, a.ReviewedBy, a.Host, a.BasePath, a.Upstream,
				a.SpecDigest, a.Operations)
		}
		if b.Len() > 0 {
			if err := tx.SendBatch(ctx, &b).Close(); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("postgres: save snapshot: %w", err)
	}
	return id, created, nil
}

// LatestSnapshot implements store.RegistryStore. The newest snapshot is the
// one with the highest ID, not the latest CreatedAt: replicas' clocks
// disagree, insertion order does not.
func (s *Store) LatestSnapshot(ctx context.Context) (store.RegistrySnapshot, error) {
	var snap store.RegistrySnapshot
	// REPEATABLE READ so the snapshot row and its APIs come from one state.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var createdAt time.Time
			if err := tx.QueryRow(ctx,
				`SELECT id, digest, created_at FROM registry_snapshots ORDER BY id DESC LIMIT 1`).
				Scan(&snap.ID, &snap.Digest, &createdAt); err != nil {
				return err
			}
			snap.CreatedAt = createdAt.UTC()
			var err error
			snap.APIs, err = listAPIs(ctx, tx, `$1`, snap.ID)
			return err
		})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.RegistrySnapshot{}, fmt.Errorf("postgres: latest snapshot: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.RegistrySnapshot{}, fmt.Errorf("postgres: latest snapshot: %w", err)
	}
	return snap, nil
}

// ListAPIs implements store.RegistryStore. With no snapshot yet it returns
// an empty list, not ErrNotFound: an empty inventory is a valid answer.
func (s *Store) ListAPIs(ctx context.Context) ([]store.APIRecord, error) {
	apis, err := listAPIs(ctx, s.pool, `(SELECT max(id) FROM registry_snapshots)`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list apis: %w", err)
	}
	return apis, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// listAPIs returns the APIs of the snapshot that the SQL expression
// snapshot (a bind parameter or a subquery) names, in byte order of name
// and version (COLLATE "C"), as the sqlite store sorts.
func listAPIs(ctx context.Context, q querier, snapshot string, args ...any) ([]store.APIRecord, error) {
	rows, err := q.Query(ctx, `SELECT name, version, owner_team, owner_contact, exposure,
		sensitivity, lifecycle, reviewed_on, reviewed_by, host, base_path, upstream, spec_digest, operations
		FROM registry_apis WHERE snapshot_id = `+snapshot+`
		ORDER BY name COLLATE "C", version COLLATE "C"`, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.APIRecord, error) {
		var a store.APIRecord
		err := row.Scan(&a.Name, &a.Version, &a.OwnerTeam, &a.OwnerContact, &a.Exposure,
			&a.Sensitivity, &a.Lifecycle, &a.ReviewedOn, &a.ReviewedBy, &a.Host, &a.BasePath,
			&a.Upstream, &a.SpecDigest, &a.Operations)
		return a, err
	})
}

// CreateCredential implements store.CredentialStore.
func (s *Store) CreateCredential(ctx context.Context, c store.Credential) error {
	if c.ID == "" {
		return errors.New("postgres: create credential: empty id")
	}
	scopes, err := encodeScopes(c.Scopes)
	if err != nil {
		return fmt.Errorf("postgres: create credential: %w", err)
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
		return fmt.Errorf("postgres: create credential: %w", err)
	}
	// ON CONFLICT DO NOTHING rather than matching SQLSTATE 23505: zero rows
	// affected is the conflict, and the transaction is not aborted by it.
	tag, err := s.pool.Exec(ctx, `INSERT INTO credentials (
		id, kind, consumer, partner, hash, scopes, created_at, created_by,
		expires_at, revoked_at, revoked_why, last_used_at, last_used_ip, metadata
	) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING`,
		c.ID, c.Kind, c.Consumer, c.Partner, hash, scopes, ts(createdAt), sc.CreatedBy,
		nullTS(c.ExpiresAt), nullTS(c.RevokedAt), sc.RevokedWhy, nullTS(c.LastUsedAt), sc.LastUsedIP, sc.Metadata)
	if err != nil {
		return fmt.Errorf("postgres: create credential: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create credential %q: %w", c.ID, store.ErrConflict)
	}
	return nil
}

const credentialColumns = `id, kind, consumer, partner, hash, scopes, created_at, created_by,
	expires_at, revoked_at, revoked_why, last_used_at, last_used_ip, metadata`

func (s *Store) scanCredential(row pgx.Row) (store.Credential, error) {
	var (
		c                                store.Credential
		sc                               store.SealedCredential
		scopes                           string
		createdAt                        time.Time
		expiresAt, revokedAt, lastUsedAt pgtype.Timestamptz
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
	c.CreatedAt = createdAt.UTC()
	c.ExpiresAt = fromNullTS(expiresAt)
	c.RevokedAt = fromNullTS(revokedAt)
	c.LastUsedAt = fromNullTS(lastUsedAt)
	return c, nil
}

// GetCredential implements store.CredentialStore.
func (s *Store) GetCredential(ctx context.Context, id string) (store.Credential, error) {
	c, err := s.scanCredential(s.pool.QueryRow(ctx,
		`SELECT `+credentialColumns+` FROM credentials WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Credential{}, fmt.Errorf("postgres: get credential %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Credential{}, fmt.Errorf("postgres: get credential %q: %w", id, err)
	}
	return c, nil
}

// ListCredentials implements store.CredentialStore. Ties on CreatedAt are
// broken by ID in byte order (COLLATE "C"), as the sqlite store does.
func (s *Store) ListCredentials(ctx context.Context, f store.CredentialFilter) ([]store.Credential, error) {
	q := `SELECT ` + credentialColumns + ` FROM credentials WHERE true`
	var args []any
	if f.Consumer != "" {
		args = append(args, f.Consumer)
		q += ` AND consumer = $` + strconv.Itoa(len(args))
	}
	if f.Partner != "" {
		args = append(args, f.Partner)
		q += ` AND partner = $` + strconv.Itoa(len(args))
	}
	if !f.IncludeRevoked {
		q += ` AND revoked_at IS NULL`
	}
	q += ` ORDER BY created_at, id COLLATE "C"`
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list credentials: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Credential, error) {
		return s.scanCredential(row)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list credentials: %w", err)
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
		return fmt.Errorf("postgres: revoke credential %q: %w", id, err)
	}
	err = s.updateCredential(ctx, `UPDATE credentials SET revoked_at = $2, revoked_why = $3
		WHERE id = $1 AND revoked_at IS NULL`, id, ts(at), reason)
	if err != nil {
		return fmt.Errorf("postgres: revoke credential %q: %w", id, err)
	}
	return nil
}

// TouchCredential implements store.CredentialStore. Touches arrive out of
// order from asynchronous workers on many replicas, so the update is
// conditional on the new time being later; an equal time keeps the first IP
// recorded.
func (s *Store) TouchCredential(ctx context.Context, id string, at time.Time, sourceIP string) error {
	if at.IsZero() {
		return fmt.Errorf("postgres: touch credential %q: zero time", id)
	}
	sourceIP, err := s.keys.SealString(sourceIP, store.CredentialAAD("last_used_ip", id))
	if err != nil {
		return fmt.Errorf("postgres: touch credential %q: %w", id, err)
	}
	err = s.updateCredential(ctx, `UPDATE credentials SET last_used_at = $2, last_used_ip = $3
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)`, id, ts(at), sourceIP)
	if err != nil {
		return fmt.Errorf("postgres: touch credential %q: %w", id, err)
	}
	return nil
}

// updateCredential runs a conditional UPDATE of credential id ($1). When it
// changes nothing, the credential either does not exist (ErrNotFound) or the
// condition kept it as it was (nil). Credentials are never deleted, so
// checking existence afterwards, outside a transaction, cannot misreport.
func (s *Store) updateCredential(ctx context.Context, query, id string, args ...any) error {
	tag, err := s.pool.Exec(ctx, query, append([]any{id}, args...)...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM credentials WHERE id = $1)`, id).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return store.ErrNotFound
	}
	return nil
}

// AddRevocation implements store.RevocationStore. When an entry for (Kind,
// Subject) exists and r expires later, the entry is replaced by r under a new
// Seq, so replicas polling RevocationsSince see the extension. Otherwise the
// existing entry is kept as it is.
func (s *Store) AddRevocation(ctx context.Context, r store.Revocation) error {
	if r.Kind == "" || r.Subject == "" {
		return errors.New("postgres: add revocation: empty kind or subject")
	}
	createdAt := r.CreatedAt
	if createdAt.IsZero() {
		createdAt = time.Now()
	}
	reason, createdBy, err := store.SealRevocation(s.keys, r)
	if err != nil {
		return fmt.Errorf("postgres: add revocation: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Sequence values are handed out at insert but become visible at
		// commit; two concurrent writers could commit seq 6 before seq 5,
		// and a replica that polled in between would skip 5 forever.
		// Serialising writers makes seq order commit order. Readers are not
		// blocked by EXCLUSIVE mode.
		if _, err := tx.Exec(ctx, `LOCK TABLE revocations IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		// seq = DEFAULT draws a fresh identity value for a replaced entry.
		_, err := tx.Exec(ctx, `INSERT INTO revocations
			(kind, subject, reason, created_at, expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (kind, subject) DO UPDATE SET
				seq = DEFAULT, reason = EXCLUDED.reason, created_at = EXCLUDED.created_at,
				expires_at = EXCLUDED.expires_at, created_by = EXCLUDED.created_by
			WHERE revocations.expires_at IS NOT NULL
				AND (EXCLUDED.expires_at IS NULL OR EXCLUDED.expires_at > revocations.expires_at)`,
			r.Kind, r.Subject, reason, ts(createdAt), nullTS(r.ExpiresAt), createdBy)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: add revocation: %w", err)
	}
	return nil
}

// IsRevoked implements store.RevocationStore. An entry counts as revoked up
// to and including its ExpiresAt instant (fail closed at the boundary), the
// same rule PurgeExpiredRevocations uses to keep it.
func (s *Store) IsRevoked(ctx context.Context, kind, subject string, now time.Time) (bool, error) {
	var revoked bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM revocations
		WHERE kind = $1 AND subject = $2 AND (expires_at IS NULL OR expires_at >= $3))`,
		kind, subject, ts(now)).Scan(&revoked)
	if err != nil {
		return false, fmt.Errorf("postgres: is revoked: %w", err)
	}
	return revoked, nil
}

// RevocationsSince implements store.RevocationStore.
func (s *Store) RevocationsSince(ctx context.Context, seq int64) ([]store.Revocation, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, kind, subject, reason, created_at, expires_at, created_by
		FROM revocations WHERE seq > $1 ORDER BY seq`, seq)
	if err != nil {
		return nil, fmt.Errorf("postgres: revocations since %d: %w", seq, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Revocation, error) {
		var (
			r         store.Revocation
			createdAt time.Time
			expiresAt pgtype.Timestamptz
		)
		err := row.Scan(&r.Seq, &r.Kind, &r.Subject, &r.Reason, &createdAt, &expiresAt, &r.CreatedBy)
		r.CreatedAt = createdAt.UTC()
		r.ExpiresAt = fromNullTS(expiresAt)
		if err == nil {
			err = store.OpenRevocation(s.keys, &r)
		}
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: revocations since %d: %w", seq, err)
	}
	return out, nil
}

// PurgeExpiredRevocations implements store.RevocationStore.
func (s *Store) PurgeExpiredRevocations(ctx context.Context, now time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx,
		`DELETE FROM revocations WHERE expires_at IS NOT NULL AND expires_at < $1`, ts(now))
	if err != nil {
		return 0, fmt.Errorf("postgres: purge revocations: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ts normalises t for a timestamptz parameter (UTC, microseconds: what the
// column keeps anyway, made explicit so both stores agree).
func ts(t time.Time) time.Time { return store.NormalizeTime(t) }

// nullTS maps the zero time to NULL.
func nullTS(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: ts(t), Valid: true}
}

func fromNullTS(v pgtype.Timestamptz) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return v.Time.UTC()
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
