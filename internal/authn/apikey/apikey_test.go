package apikey

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/sqlite"
)

var testPepper = []byte("0123456789abcdef0123456789abcdef-test-pepper")

var testConsumers = []config.Consumer{
	{Name: "acme-billing", Partner: "acme", Scopes: []string{"orders:read", "orders:write"},
		Roles: []string{"billing"}, Claims: map[string]any{"customers": []any{"c-1", "c-2"}}},
	{Name: "acme-reports", Partner: "acme", Scopes: []string{"orders:read"}},
	{Name: "globex-app", Partner: "globex", Scopes: []string{"orders:read"}},
	{Name: "solo", Scopes: []string{"status:read"}},
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// spyStore counts lookups and can fail or hold them.
type spyStore struct {
	store.CredentialStore
	gets      atomic.Int64
	touches   atomic.Int64
	failGets  atomic.Bool
	getDelay  time.Duration
	touchGate chan struct{} // when set, TouchCredential waits for it
}

func (s *spyStore) GetCredential(ctx context.Context, id string) (store.Credential, error) {
	s.gets.Add(1)
	if s.failGets.Load() {
		return store.Credential{}, errors.New("database is locked")
	}
	if s.getDelay > 0 {
		time.Sleep(s.getDelay)
	}
	return s.CredentialStore.GetCredential(ctx, id)
}

func (s *spyStore) TouchCredential(ctx context.Context, id string, at time.Time, ip string) error {
	if s.touchGate != nil {
		<-s.touchGate
	}
	s.touches.Add(1)
	return s.CredentialStore.TouchCredential(ctx, id, at, ip)
}

type revCall struct {
	id     string
	until  time.Time
	reason string
}

// recRevoker records calls and writes the store's revocation list.
type recRevoker struct {
	mu    sync.Mutex
	calls []revCall
	next  Revoker
}

func (r *recRevoker) Revoke(ctx context.Context, rev store.Revocation) error {
	if rev.Kind != store.RevokeCredential {
		return errors.New("unexpected kind " + rev.Kind)
	}
	r.mu.Lock()
	r.calls = append(r.calls, revCall{rev.Subject, rev.ExpiresAt, rev.Reason})
	r.mu.Unlock()
	return r.next.Revoke(ctx, rev)
}

func (r *recRevoker) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.calls {
		out = append(out, c.id)
	}
	slices.Sort(out)
	return out
}

type env struct {
	svc   *Service
	auth  *Authenticator
	db    *sqlite.Store
	spy   *spyStore
	clock *clock
	rev   *recRevoker
}

func newEnv(t testing.TB, ao AuthOptions) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{db: db, spy: &spyStore{CredentialStore: db},
		clock: &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}, rev: &recRevoker{next: StoreRevoker{Store: db}}}
	e.svc, err = NewService(Options{Store: e.spy, Pepper: testPepper, Consumers: testConsumers,
		MaxTTL: 90 * 24 * time.Hour, Revoker: e.rev, Revocations: db, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.auth, err = e.svc.NewAuthenticator(ao)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.auth.Close() })
	return e
}

func (e *env) issue(t testing.TB, consumer string, scopes []string, ttl time.Duration) (string, store.Credential) {
	t.Helper()
	key, cred, err := e.svc.Issue(context.Background(), IssueRequest{Consumer: consumer, Scopes: scopes, TTL: ttl, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return key, cred
}

func reqWith(header, value, query string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://api.example.com/orders/v1/orders/1", nil)
	r.RemoteAddr = "198.51.100.7:40000"
	if header != "" {
		r.Header.Set(header, value)
	}
	r.URL.RawQuery = query
	return r
}

func apiKeyReq(key string) *http.Request { return reqWith("Authorization", "ApiKey "+key, "") }

func failureOf(t *testing.T, err error) *authn.Failure {
	t.Helper()
	var f *authn.Failure
	if !errors.As(err, &f) {
		t.Fatalf("want *authn.Failure, got %v", err)
	}
	return f
}

// Attacker's table: every row a request that must be refused with the given
// internal reason, beside benign twins that must pass.
func TestAuthenticateAttackTable(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	ctx := context.Background()
	key, cred := e.issue(t, "acme-billing", []string{"orders:read"}, 30*24*time.Hour)
	globexKey, _ := e.issue(t, "globex-app", nil, 0)
	expiring, _ := e.issue(t, "acme-reports", nil, time.Hour)
	revoked, revokedCred := e.issue(t, "acme-reports", nil, 0)
	if err := e.svc.Revoke(ctx, revokedCred.ID, "leaked in a ticket"); err != nil {
		t.Fatal(err)
	}
	rotatedOld, rotatedCred := e.issue(t, "acme-reports", nil, 0)
	rotatedNew, _, err := e.svc.Rotate(ctx, rotatedCred.ID, 2*time.Hour, "ops")
	if err != nil {
		t.Fatal(err)
	}
	unknownKey := func() string { // valid format and checksum, ID never issued
		k, _ := mustGenerate(t)
		return k
	}()
	// Right ID, wrong secret: forge a key with a valid checksum.
	wrongSecret := forge(key[:secStart] + strings.Repeat("A", SecretLen))

	type row struct {
		name   string
		req    *http.Request
		before func()
		reason string // "" with consumer set: accepted
		noCred bool
		// consumer the key must yield when accepted
		consumer, partner string
		lookups           int64 // -1: don't care
	}
	rows := []row{
		{name: "benign: Authorization ApiKey", req: apiKeyReq(key), consumer: "acme-billing", partner: "acme", lookups: -1},
		{name: "benign: X-API-Key", req: reqWith("X-API-Key", key, ""), consumer: "acme-billing", partner: "acme", lookups: -1},
		{name: "benign: scheme is case-insensitive", req: reqWith("Authorization", "apikey  "+key, ""), consumer: "acme-billing", partner: "acme", lookups: -1},
		{name: "benign: other query parameters", req: reqWith("X-API-Key", key, "page=2&monkey=1&keyword=x&q=ghk_docs"), consumer: "acme-billing", partner: "acme", lookups: -1},
		{name: "benign: empty key parameter", req: reqWith("X-API-Key", key, "key="), consumer: "acme-billing", partner: "acme", lookups: -1},
		{name: "a key only yields its own consumer (B)", req: apiKeyReq(globexKey), consumer: "globex-app", partner: "globex", lookups: -1},
		{name: "no header", req: reqWith("", "", ""), noCred: true, lookups: 0},
		{name: "Bearer is not mine", req: reqWith("Authorization", "Bearer "+key, ""), noCred: true, lookups: 0},
		{name: "empty X-API-Key", req: reqWith("X-API-Key", "  ", ""), noCred: true, lookups: 0},
		{name: "bad checksum", req: apiKeyReq(flip(key, KeyLen-1)), reason: ReasonBadChecksum, lookups: 0},
		{name: "typo in secret", req: apiKeyReq(flip(key, 50)), reason: ReasonBadChecksum, lookups: 0},
		{name: "truncated", req: apiKeyReq(key[:60]), reason: ReasonBadFormat, lookups: 0},
		{name: "wrong prefix", req: apiKeyReq("ghp_" + key[4:]), reason: ReasonBadFormat, lookups: 0},
		{name: "garbage", req: reqWith("X-API-Key", "' OR 1=1 --", ""), reason: ReasonBadFormat, lookups: 0},
		{name: "valid format, unknown id", req: apiKeyReq(unknownKey), reason: ReasonUnknownKey, lookups: 1},
		{name: "right id, wrong secret", req: apiKeyReq(wrongSecret), reason: ReasonBadSecret, lookups: -1},
		{name: "benign twin: expiring key before expiry", req: apiKeyReq(expiring), consumer: "acme-reports", partner: "acme", lookups: -1},
		{name: "expired", req: apiKeyReq(expiring), before: func() { e.clock.Add(time.Hour) }, reason: ReasonExpired, lookups: -1},
		{name: "revoked", req: apiKeyReq(revoked), reason: ReasonRevoked, lookups: -1},
		{name: "key in query only", req: reqWith("", "", "api_key="+key), reason: ReasonKeyInQuery, lookups: 0},
		{name: "two different keys", req: func() *http.Request {
			r := apiKeyReq(key)
			r.Header.Set("X-API-Key", globexKey)
			return r
		}(), reason: ReasonAmbiguous, lookups: 0},
		{name: "benign: the same key in both headers", req: func() *http.Request {
			r := apiKeyReq(key)
			r.Header.Set("X-API-Key", key)
			return r
		}(), consumer: "acme-billing", partner: "acme", lookups: -1},
	}
	for _, p := range []string{"api_key", "apikey", "key", "access_token", "API_KEY", "x-api-key"} {
		rows = append(rows, row{name: "key in query ?" + p, req: reqWith("X-API-Key", key, "a=1&"+p+"="+url.QueryEscape(key)),
			reason: ReasonKeyInQuery, lookups: 0})
	}
	rows = append(rows,
		row{name: "key-shaped value in any parameter", req: reqWith("X-API-Key", key, "redirect=https://x/?t="+key), reason: ReasonKeyInQuery, lookups: 0},
		row{name: "percent-encoded key in query", req: reqWith("X-API-Key", key, "q=%67hk_"+key[4:]), reason: ReasonKeyInQuery, lookups: 0},
		row{name: "key after a semicolon", req: reqWith("X-API-Key", key, "a=1;apikey=x"), reason: ReasonKeyInQuery, lookups: 0},
		row{name: "key as a parameter name", req: reqWith("X-API-Key", key, key), reason: ReasonKeyInQuery, lookups: 0},
		row{name: "benign twin: rotated old key inside overlap", req: apiKeyReq(rotatedOld), consumer: "acme-reports", partner: "acme", lookups: -1},
		row{name: "benign twin: rotation's new key", req: apiKeyReq(rotatedNew), consumer: "acme-reports", partner: "acme", lookups: -1},
		row{name: "rotated old key after overlap", req: apiKeyReq(rotatedOld), before: func() { e.clock.Add(time.Hour) }, reason: ReasonRotated, lookups: -1},
		row{name: "benign twin: rotation's new key after overlap", req: apiKeyReq(rotatedNew), consumer: "acme-reports", partner: "acme", lookups: -1},
	)

	var unknownFailure, wrongFailure *authn.Failure
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			before := e.spy.gets.Load()
			p, err := e.auth.Authenticate(tc.req)
			if tc.lookups >= 0 {
				if n := e.spy.gets.Load() - before; n != tc.lookups {
					t.Errorf("store lookups = %d, want %d", n, tc.lookups)
				}
			}
			switch {
			case tc.noCred:
				if !errors.Is(err, authn.ErrNoCredential) || p != nil {
					t.Fatalf("want ErrNoCredential, got %v, %v", p, err)
				}
			case tc.reason != "":
				if p != nil {
					t.Fatalf("accepted as %+v", p)
				}
				f := failureOf(t, err)
				if f.Reason != tc.reason || f.Scheme != Scheme {
					t.Fatalf("failure %+v, want reason %s", f, tc.reason)
				}
				switch tc.reason {
				case ReasonKeyInQuery:
					if f.Code != "invalid_request" || f.Detail != DetailKeyInQuery {
						t.Fatalf("query failure %+v", f)
					}
				case ReasonAmbiguous:
					if f.Code != "invalid_request" {
						t.Fatalf("ambiguous failure %+v", f)
					}
				default:
					// Nothing but the internal reason tells failures apart.
					if f.Code != "invalid_token" || f.Detail != "" {
						t.Fatalf("failure reveals more than the reason: %+v", f)
					}
				}
				if tc.reason == ReasonUnknownKey {
					unknownFailure = f
				}
				if tc.reason == ReasonBadSecret {
					wrongFailure = f
				}
			default:
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if p.Consumer != tc.consumer || p.Partner != tc.partner || p.Kind != authn.KindAPIKey {
					t.Fatalf("principal %+v, want consumer %s partner %s", p, tc.consumer, tc.partner)
				}
			}
		})
	}
	if unknownFailure == nil || wrongFailure == nil {
		t.Fatal("unknown/wrong-secret rows did not run")
	}
	u, w := *unknownFailure, *wrongFailure
	u.Reason, w.Reason = "", ""
	if u != w {
		t.Fatalf("unknown key and wrong secret differ beyond Reason: %+v vs %+v", *unknownFailure, *wrongFailure)
	}

	// The accepted principal carries the key's scopes and the consumer's
	// roles and claims, nothing more.
	p, err := e.auth.Authenticate(apiKeyReq(key))
	if err != nil {
		t.Fatal(err)
	}
	if p.CredentialID != cred.ID || !slices.Equal(p.Scopes, []string{"orders:read"}) ||
		!slices.Equal(p.Roles, []string{"billing"}) || p.Claims["customers"] == nil || !p.ExpiresAt.Equal(cred.ExpiresAt) {
		t.Fatalf("principal %+v", p)
	}
	if p.HasScope("orders:write") {
		t.Fatal("key holds a scope it was not issued with")
	}
	// Principals share cached slices; a stage appending to one must not
	// grant the scope to the next request.
	p.Scopes = append(p.Scopes, "orders:write")
	p.Roles = append(p.Roles, "admin")
	p2, _ := e.auth.Authenticate(apiKeyReq(key))
	if p2.HasScope("orders:write") || p2.HasRole("admin") {
		t.Fatalf("one principal's append leaked into another: %+v", p2)
	}
}

// Authenticate, revoke, rotate and reload at once, for the race detector.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, AuthOptions{TouchEvery: time.Nanosecond})
	ctx := context.Background()
	var keys []string
	var ids []string
	for range 8 {
		k, c := e.issue(t, "acme-billing", nil, 0)
		keys, ids = append(keys, k), append(ids, c.ID)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				p, err := e.auth.Authenticate(apiKeyReq(keys[(g+i)%len(keys)]))
				if err == nil && p.Consumer != "acme-billing" {
					t.Errorf("principal %+v", p)
				}
			}
		})
	}
	wg.Go(func() {
		for i, id := range ids[:4] {
			if i%2 == 0 {
				_ = e.svc.Revoke(ctx, id, "race")
			} else {
				_, _, _ = e.svc.Rotate(ctx, id, time.Minute, "")
			}
			e.svc.Reconfigure(testConsumers, 0)
		}
	})
	wg.Wait()
	for _, k := range keys[:4:4] {
		if _, err := e.auth.Authenticate(apiKeyReq(k)); err != nil && !errors.As(err, new(*authn.Failure)) {
			t.Fatal(err)
		}
	}
	if _, err := e.auth.Authenticate(apiKeyReq(keys[0])); failureOf(t, err).Reason != ReasonRevoked {
		t.Fatalf("revoked during the race, then: %v", err)
	}
}

// forge returns body with a valid checksum appended: an attacker can always
// compute the CRC, so the checksum must never be mistaken for a defence.
func forge(body string) string {
	var sum [SumLen]byte
	encodeSum(&sum, crcString(body))
	return body + string(sum[:])
}

func TestStoreFailureIsAnErrorNotAFailure(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	key, _ := e.issue(t, "solo", nil, 0)
	e.spy.failGets.Store(true)
	p, err := e.auth.Authenticate(apiKeyReq(key))
	var f *authn.Failure
	if p != nil || err == nil || errors.As(err, &f) || errors.Is(err, authn.ErrNoCredential) {
		t.Fatalf("store failure must fail closed with a plain error, got %v, %v", p, err)
	}
	// Nothing was cached: once the store is back, the key works.
	e.spy.failGets.Store(false)
	if _, err := e.auth.Authenticate(apiKeyReq(key)); err != nil {
		t.Fatal(err)
	}
}

func TestOtherCredentialKindsAreNotAPIKeys(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	key, id := mustGenerate(t)
	mac := hmac.New(sha256.New, testPepper)
	mac.Write([]byte(key))
	if err := e.db.CreateCredential(context.Background(), store.Credential{ID: id, Kind: "client_secret",
		Consumer: "solo", Hash: mac.Sum(nil), ExpiresAt: e.clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, err := e.auth.Authenticate(apiKeyReq(key))
	if f := failureOf(t, err); f.Reason != ReasonUnknownKey {
		t.Fatalf("client secret accepted as an API key: %+v", f)
	}
}

// Config changes apply to keys already issued: removing a consumer kills its
// keys, moving it to another partner refuses them, narrowing its scopes
// narrows theirs.
func TestReconfigureAppliesToIssuedKeys(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	key, _ := e.issue(t, "acme-billing", nil, 0)
	if p, err := e.auth.Authenticate(apiKeyReq(key)); err != nil || len(p.Scopes) != 2 {
		t.Fatalf("%v %v", p, err)
	}
	narrowed := slices.Clone(testConsumers)
	narrowed[0].Scopes = []string{"orders:read"}
	e.svc.Reconfigure(narrowed, 0)
	if p, err := e.auth.Authenticate(apiKeyReq(key)); err != nil || !slices.Equal(p.Scopes, []string{"orders:read"}) {
		t.Fatalf("scopes not narrowed: %v %v", p, err)
	}
	moved := slices.Clone(testConsumers)
	moved[0].Partner = "globex"
	e.svc.Reconfigure(moved, 0)
	if _, err := e.auth.Authenticate(apiKeyReq(key)); failureOf(t, err).Reason != ReasonPartnerChanged {
		t.Fatalf("key of a consumer moved to another partner: %v", err)
	}
	e.svc.Reconfigure(testConsumers[1:], 0)
	if _, err := e.auth.Authenticate(apiKeyReq(key)); failureOf(t, err).Reason != ReasonUnknownConsumer {
		t.Fatalf("key of a removed consumer: %v", err)
	}
}

func TestIssueRules(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  IssueRequest
		want error
	}{
		{"scope the consumer lacks", IssueRequest{Consumer: "acme-reports", Scopes: []string{"orders:read", "orders:write"}}, ErrScope},
		{"another consumer's scope", IssueRequest{Consumer: "solo", Scopes: []string{"orders:read"}}, ErrScope},
		{"ttl over the maximum", IssueRequest{Consumer: "solo", TTL: 91 * 24 * time.Hour}, ErrTTL},
		{"negative ttl", IssueRequest{Consumer: "solo", TTL: -time.Second}, ErrTTL},
		{"unknown consumer", IssueRequest{Consumer: "mallory"}, ErrUnknownConsumer},
		{"benign: subset of scopes", IssueRequest{Consumer: "acme-billing", Scopes: []string{"orders:write"}}, nil},
		{"benign: ttl at the maximum", IssueRequest{Consumer: "solo", TTL: 90 * 24 * time.Hour}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, cred, err := e.svc.Issue(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil && (key != "" || cred.ID != "") {
				t.Fatal("key returned with an error")
			}
		})
	}

	key, cred, err := e.svc.Issue(ctx, IssueRequest{Consumer: "acme-billing", Scopes: []string{"orders:write", "orders:read", "orders:write"}, CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cred.Scopes, []string{"orders:read", "orders:write"}) {
		t.Fatalf("scopes %v", cred.Scopes)
	}
	if !cred.ExpiresAt.Equal(e.clock.Now().Add(90 * 24 * time.Hour)) {
		t.Fatalf("zero ttl gave expiry %v, want the maximum", cred.ExpiresAt)
	}
	stored, err := e.db.GetCredential(ctx, cred.ID)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, testPepper)
	mac.Write([]byte(key))
	if !hmac.Equal(stored.Hash, mac.Sum(nil)) {
		t.Fatal("stored hash is not HMAC-SHA-256(pepper, key)")
	}
	if stored.Partner != "acme" || stored.CreatedBy != "alice" || stored.Kind != authn.KindAPIKey {
		t.Fatalf("stored %+v", stored)
	}
	// Empty scopes: all of the consumer's.
	_, all, err := e.svc.Issue(ctx, IssueRequest{Consumer: "acme-billing"})
	if err != nil || len(all.Scopes) != 2 {
		t.Fatalf("%v %v", all.Scopes, err)
	}
	// No pepper: listing works, issuing does not.
	noPepper, err := NewService(Options{Store: e.db, Consumers: testConsumers})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := noPepper.Issue(ctx, IssueRequest{Consumer: "solo"}); !errors.Is(err, ErrNoPepper) {
		t.Fatalf("issue without pepper: %v", err)
	}
	if _, err := noPepper.NewAuthenticator(AuthOptions{}); !errors.Is(err, ErrNoPepper) {
		t.Fatalf("authenticator without pepper: %v", err)
	}
	// A different pepper verifies nothing: a stolen database alone is useless.
	other, err := NewService(Options{Store: e.db, Consumers: testConsumers, Pepper: []byte(strings.Repeat("x", 32))})
	if err != nil {
		t.Fatal(err)
	}
	oa, _ := other.NewAuthenticator(AuthOptions{})
	defer oa.Close()
	if _, err := oa.Authenticate(apiKeyReq(key)); failureOf(t, err).Reason != ReasonBadSecret {
		t.Fatalf("key verified under another pepper: %v", err)
	}
}

func TestRotate(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	ctx := context.Background()
	old, oldCred := e.issue(t, "acme-billing", []string{"orders:write"}, 10*24*time.Hour)
	if _, err := e.auth.Authenticate(apiKeyReq(old)); err != nil { // cached before the rotation
		t.Fatal(err)
	}
	e.clock.Add(24 * time.Hour)
	newKey, newCred, err := e.svc.Rotate(ctx, oldCred.ID, 2*time.Hour, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if newCred.Consumer != oldCred.Consumer || !slices.Equal(newCred.Scopes, oldCred.Scopes) || newCred.CreatedBy != "ops" ||
		!newCred.ExpiresAt.Equal(e.clock.Now().Add(10*24*time.Hour)) {
		t.Fatalf("new credential %+v", newCred)
	}
	if len(e.rev.ids()) != 0 {
		t.Fatal("rotation with overlap put the old key on the revocation list")
	}
	stored, _ := e.db.GetCredential(ctx, oldCred.ID)
	if Status(stored, e.clock.Now()) != StatusRotating || !strings.HasPrefix(stored.RevokedWhy, RotatedPrefix) {
		t.Fatalf("old key %+v", stored)
	}
	p, err := e.auth.Authenticate(apiKeyReq(old))
	if err != nil {
		t.Fatalf("old key refused inside the overlap: %v", err)
	}
	if !p.ExpiresAt.Equal(e.clock.Now().Add(2 * time.Hour)) {
		t.Fatalf("old key's principal expires %v, want the overlap's end", p.ExpiresAt)
	}
	e.clock.Add(2 * time.Hour)
	if _, err := e.auth.Authenticate(apiKeyReq(old)); failureOf(t, err).Reason != ReasonRotated {
		t.Fatalf("old key after overlap: %v", err)
	}
	if _, err := e.auth.Authenticate(apiKeyReq(newKey)); err != nil {
		t.Fatal(err)
	}
	// Rotating again: the new key rotates, the old (now ended) one does not.
	if _, _, err := e.svc.Rotate(ctx, oldCred.ID, time.Hour, ""); !errors.Is(err, ErrNotRotatable) {
		t.Fatalf("rotating an ended key: %v", err)
	}
	k3, c3, err := e.svc.Rotate(ctx, newCred.ID, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Rotate(ctx, newCred.ID, time.Hour, ""); !errors.Is(err, ErrNotRotatable) {
		t.Fatalf("rotating a key inside its overlap: %v", err)
	}
	if _, _, err := e.svc.Rotate(ctx, "0000000000000000", time.Hour, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotating an unknown key: %v", err)
	}
	// Zero overlap: the old key dies now, everywhere (revocation list).
	if _, _, err := e.svc.Rotate(ctx, c3.ID, 0, ""); err != nil {
		t.Fatal(err)
	}
	if got := e.rev.ids(); !slices.Equal(got, []string{c3.ID}) {
		t.Fatalf("revocation list got %v", got)
	}
	if _, err := e.auth.Authenticate(apiKeyReq(k3)); err == nil {
		t.Fatal("key rotated with zero overlap still works")
	}
	// A consumer that lost a scope cannot rotate a key holding it.
	k4, c4 := e.issue(t, "acme-billing", []string{"orders:write"}, 0)
	_ = k4
	narrowed := slices.Clone(testConsumers)
	narrowed[0].Scopes = []string{"orders:read"}
	e.svc.Reconfigure(narrowed, 0)
	if _, _, err := e.svc.Rotate(ctx, c4.ID, time.Hour, ""); !errors.Is(err, ErrScope) {
		t.Fatalf("rotation kept a withdrawn scope: %v", err)
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	ctx := context.Background()
	key, cred := e.issue(t, "acme-billing", nil, 0)
	if _, err := e.auth.Authenticate(apiKeyReq(key)); err != nil { // now cached
		t.Fatal(err)
	}
	if err := e.svc.Revoke(ctx, cred.ID, "incident 42"); err != nil {
		t.Fatal(err)
	}
	// In-process revocation drops the cached credential at once.
	if _, err := e.auth.Authenticate(apiKeyReq(key)); failureOf(t, err).Reason != ReasonRevoked {
		t.Fatalf("revoked key: %v", err)
	}
	stored, _ := e.db.GetCredential(ctx, cred.ID)
	if stored.RevokedAt.IsZero() || stored.RevokedWhy != "incident 42" {
		t.Fatalf("store not marked: %+v", stored)
	}
	e.rev.mu.Lock()
	call := e.rev.calls[0]
	e.rev.mu.Unlock()
	if call.id != cred.ID || !call.until.Equal(cred.ExpiresAt) || call.reason != "incident 42" {
		t.Fatalf("revoker call %+v", call)
	}
	if err := e.svc.Revoke(ctx, cred.ID, "again"); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if err := e.svc.Revoke(ctx, "0000000000000000", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an unknown id: %v", err)
	}
}

func TestRevokeConsumerAndPartner(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	ctx := context.Background()
	_, a1 := e.issue(t, "acme-billing", nil, 0)
	_, a2 := e.issue(t, "acme-billing", nil, 0)
	_, r1 := e.issue(t, "acme-reports", nil, 0)
	_, rotating := e.issue(t, "acme-reports", nil, 0)
	_, r2, err := e.svc.Rotate(ctx, rotating.ID, 24*time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	gKey, _ := e.issue(t, "globex-app", nil, 0)

	n, err := e.svc.RevokeConsumer(ctx, "acme-billing", "offboarded")
	if err != nil || n != 2 {
		t.Fatalf("revoke consumer: %d %v", n, err)
	}
	if got, want := e.rev.ids(), sorted(a1.ID, a2.ID); !slices.Equal(got, want) {
		t.Fatalf("revoked %v, want %v", got, want)
	}
	// The partner's remaining keys, including one inside a rotation overlap.
	n, err = e.svc.RevokePartner(ctx, "acme", "partner breach")
	if err != nil || n != 3 {
		t.Fatalf("revoke partner: %d %v", n, err)
	}
	if got, want := e.rev.ids(), sorted(a1.ID, a2.ID, r1.ID, rotating.ID, r2.ID); !slices.Equal(got, want) {
		t.Fatalf("revoked %v, want %v", got, want)
	}
	// The key revoked inside its rotation overlap shows as revoked, and
	// cannot be rotated, although the store keeps its first (future)
	// revocation time.
	stored, _ := e.db.GetCredential(ctx, rotating.ID)
	views, err := e.svc.Views(ctx, []store.Credential{stored})
	if err != nil || views[0].Status != StatusRevoked {
		t.Fatalf("views %+v %v", views, err)
	}
	if _, _, err := e.svc.Rotate(ctx, rotating.ID, time.Hour, ""); !errors.Is(err, ErrNotRotatable) || !strings.Contains(err.Error(), "is revoked") {
		t.Fatalf("rotate revoked-in-overlap key: %v", err)
	}
	// Another partner's consumer is untouched.
	if _, err := e.auth.Authenticate(apiKeyReq(gKey)); err != nil {
		t.Fatalf("globex key affected: %v", err)
	}
	if _, err := e.svc.RevokeConsumer(ctx, "mallory", ""); !errors.Is(err, ErrUnknownConsumer) {
		t.Fatalf("unknown consumer: %v", err)
	}
	if _, err := e.svc.RevokePartner(ctx, "initech", ""); !errors.Is(err, ErrUnknownPartner) {
		t.Fatalf("unknown partner: %v", err)
	}
	// Nothing left to revoke is not an error.
	if n, err := e.svc.RevokePartner(ctx, "acme", ""); err != nil || n != 0 {
		t.Fatalf("second partner revoke: %d %v", n, err)
	}
}

// Only live credentials are revoked and counted: expired ones stay as they are.
func TestRevokeConsumerSkipsExpired(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	_, expired := e.issue(t, "solo", nil, time.Hour)
	_, live := e.issue(t, "solo", nil, 0)
	e.clock.Add(time.Hour)
	n, err := e.svc.RevokeConsumer(context.Background(), "solo", "")
	if err != nil || n != 1 || !slices.Equal(e.rev.ids(), []string{live.ID}) {
		t.Fatalf("revoked %d %v (%v), want only %s not %s", n, e.rev.ids(), err, live.ID, expired.ID)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestStoreRevokerWritesTheRevocationList(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	ctx := context.Background()
	svc, err := NewService(Options{Store: e.db, Pepper: testPepper, Consumers: testConsumers,
		Revoker: StoreRevoker{Store: e.db, CreatedBy: "cli"}})
	if err != nil {
		t.Fatal(err)
	}
	_, cred, err := svc.Issue(ctx, IssueRequest{Consumer: "solo", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Revoke(ctx, cred.ID, "test"); err != nil {
		t.Fatal(err)
	}
	on, err := e.db.IsRevoked(ctx, store.RevokeCredential, cred.ID, time.Now())
	if err != nil || !on {
		t.Fatalf("not on the revocation list: %v %v", on, err)
	}
	// The entry lasts only as long as the key would have.
	if on, _ := e.db.IsRevoked(ctx, store.RevokeCredential, cred.ID, cred.ExpiresAt.Add(time.Second)); on {
		t.Fatal("revocation outlives the key")
	}
}

func TestCache(t *testing.T) {
	e := newEnv(t, AuthOptions{CacheTTL: 5 * time.Second, NegativeTTL: time.Second})
	key, _ := e.issue(t, "solo", nil, 0)
	get := func() int64 { return e.spy.gets.Load() }
	for range 10 {
		if _, err := e.auth.Authenticate(apiKeyReq(key)); err != nil {
			t.Fatal(err)
		}
	}
	if get() != 1 {
		t.Fatalf("warm cache made %d lookups", get())
	}
	e.clock.Add(5 * time.Second)
	_, _ = e.auth.Authenticate(apiKeyReq(key))
	if get() != 2 {
		t.Fatalf("entry not refreshed after its TTL: %d lookups", get())
	}
	// Unknown IDs are remembered briefly, then looked up again, so a key
	// issued elsewhere starts working.
	unknown, _ := mustGenerate(t)
	_, _ = e.auth.Authenticate(apiKeyReq(unknown))
	_, _ = e.auth.Authenticate(apiKeyReq(unknown))
	if get() != 3 {
		t.Fatalf("negative cache: %d lookups", get())
	}
	e.clock.Add(time.Second)
	_, _ = e.auth.Authenticate(apiKeyReq(unknown))
	if get() != 4 {
		t.Fatalf("negative entry outlived its TTL: %d lookups", get())
	}
	// Expiry is checked on every request, even from a fresh cache entry.
	short, _ := e.issue(t, "solo", nil, 3*time.Second)
	if _, err := e.auth.Authenticate(apiKeyReq(short)); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(3 * time.Second)
	if _, err := e.auth.Authenticate(apiKeyReq(short)); failureOf(t, err).Reason != ReasonExpired {
		t.Fatalf("cached key used past expiry: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	e := newEnv(t, AuthOptions{CacheSize: 64})
	for range 200 {
		k, _ := e.issue(t, "solo", nil, 0)
		if _, err := e.auth.Authenticate(apiKeyReq(k)); err != nil {
			t.Fatal(err)
		}
		u, _ := mustGenerate(t)
		_, _ = e.auth.Authenticate(apiKeyReq(u))
	}
	if n := e.auth.Stats().CachedKeys; n > 64 {
		t.Fatalf("cache holds %d keys, bound 64", n)
	}
	for i := range e.auth.cache.shards {
		if n := len(e.auth.cache.shards[i].neg); n > e.auth.cache.perShard/4+1 {
			t.Fatalf("negative shard holds %d", n)
		}
	}
}

func TestConcurrentMissesShareOneLookup(t *testing.T) {
	e := newEnv(t, AuthOptions{})
	e.spy.getDelay = 50 * time.Millisecond
	key, _ := e.issue(t, "solo", nil, 0)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := e.auth.Authenticate(apiKeyReq(key)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := e.spy.gets.Load(); n != 1 {
		t.Fatalf("20 concurrent first uses made %d store lookups", n)
	}
}

func TestLastUsedIsRecordedAsynchronously(t *testing.T) {
	e := newEnv(t, AuthOptions{TouchEvery: time.Hour})
	ctx := context.Background()
	key, cred := e.issue(t, "solo", nil, 0)
	gate := make(chan struct{})
	e.spy.touchGate = gate
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before Close, which waits for the held write

	// The write is held; authentication must not wait for it.
	done := make(chan error, 1)
	go func() {
		_, err := e.auth.Authenticate(apiKeyReq(key))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Authenticate waited for the last-used write")
	}
	for range 50 { // coalesced: one write per key per TouchEvery
		if _, err := e.auth.Authenticate(apiKeyReq(key)); err != nil {
			t.Fatal(err)
		}
	}
	release()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := e.db.GetCredential(ctx, cred.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !c.LastUsedAt.IsZero() {
			if !c.LastUsedAt.Equal(e.clock.Now()) || c.LastUsedIP != "198.51.100.7" {
				t.Fatalf("last used %v from %q", c.LastUsedAt, c.LastUsedIP)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("last use never recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.spy.touches.Load(); n != 1 {
		t.Fatalf("%d last-used writes, want 1", n)
	}
	// After TouchEvery another use is recorded.
	e.clock.Add(time.Hour)
	_, _ = e.auth.Authenticate(apiKeyReq(key))
	e.auth.Close() // flushes
	if n := e.spy.touches.Load(); n != 2 {
		t.Fatalf("%d last-used writes after TouchEvery, want 2", n)
	}
	// Closed: authentication still works, nothing more is queued.
	e.clock.Add(time.Hour)
	if _, err := e.auth.Authenticate(apiKeyReq(key)); err != nil {
		t.Fatal(err)
	}
}

func TestLastUsedDropsWhenQueueIsFull(t *testing.T) {
	e := newEnv(t, AuthOptions{TouchQueue: 1, ClientIP: func(*http.Request) string { return "203.0.113.9" }})
	gate := make(chan struct{})
	e.spy.touchGate = gate
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	for range 10 {
		k, _ := e.issue(t, "solo", nil, 0)
		if _, err := e.auth.Authenticate(apiKeyReq(k)); err != nil {
			t.Fatal(err)
		}
	}
	release()
	e.auth.Close()
	st := e.auth.Stats()
	if st.TouchesDropped == 0 || st.TouchesDropped+st.TouchesWritten != 10 {
		t.Fatalf("stats %+v: want drops counted and none lost silently", st)
	}
}

func TestLoadPepper(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pepper")
	if err := os.WriteFile(good, []byte("  "+string(testPepper)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, testPepper, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("tiny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		id      config.Identity
		wantErr string
	}{
		{"inline, trimmed", config.Identity{Pepper: " " + string(testPepper) + " "}, ""},
		{"file 0600, trimmed", config.Identity{PepperFile: good}, ""},
		{"file readable by others", config.Identity{PepperFile: open}, "chmod 600"},
		{"file too short", config.Identity{PepperFile: short}, "too short"},
		{"inline too short", config.Identity{Pepper: "short"}, "too short"},
		{"missing file", config.Identity{PepperFile: filepath.Join(dir, "nope")}, "read pepper file"},
		{"directory", config.Identity{PepperFile: dir}, "not a regular file"},
		{"both", config.Identity{Pepper: string(testPepper), PepperFile: good}, "not both"},
		{"neither", config.Identity{}, "no pepper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := LoadPepper(tc.id)
			if tc.wantErr == "" {
				if err != nil || string(p) != string(testPepper) {
					t.Fatalf("%q %v", p, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "36h": 36 * time.Hour, "0": 0, "90m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "d", "-1d", "1.5d", "tomorrow"} {
		if _, err := ParseDuration(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted", in)
		}
	}
	if FormatDuration(90*24*time.Hour) != "90d" || FormatDuration(36*time.Hour) != "36h0m0s" {
		t.Error("FormatDuration")
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	e := newEnv(b, AuthOptions{})
	e.svc.now = time.Now
	e.clock = nil
	key, _ := e.issue(b, "acme-billing", nil, 0)
	r := apiKeyReq(key)
	if _, err := e.auth.Authenticate(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.auth.Authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAuthenticateSerial(b *testing.B) {
	e := newEnv(b, AuthOptions{})
	e.svc.now = time.Now
	e.clock = nil
	key, _ := e.issue(b, "acme-billing", nil, 0)
	r := apiKeyReq(key)
	if _, err := e.auth.Authenticate(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.auth.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHMAC is the floor BenchmarkAuthenticate is measured against: one
// HMAC-SHA-256 of a key with a pooled keyed state.
func BenchmarkHMAC(b *testing.B) {
	h, err := newHasher(testPepper)
	if err != nil {
		b.Fatal(err)
	}
	key, _ := mustGenerate(b)
	want := h.hash(key)
	b.ReportAllocs()
	for b.Loop() {
		if !h.verify(key, want) {
			b.Fatal("mismatch")
		}
	}
}

func BenchmarkParse(b *testing.B) {
	key, _ := mustGenerate(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(key); err != nil {
			b.Fatal(err)
		}
	}
}
