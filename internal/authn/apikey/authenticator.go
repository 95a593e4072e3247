package apikey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Scheme is the Authorization scheme (and WWW-Authenticate challenge) of API keys.
const Scheme = "ApiKey"

// HeaderName is the alternative header an API key may come in.
const HeaderName = "X-API-Key"

// Failure reasons (authn.Failure.Reason), for logs and audit only: the
// client sees the same invalid_token answer for every one of them except
// key_in_query and ambiguous_key, which tell the client how to fix its call.
const (
	ReasonKeyInQuery      = "key_in_query"
	ReasonAmbiguous       = "ambiguous_key"
	ReasonBadFormat       = "bad_format"
	ReasonBadChecksum     = "bad_checksum"
	ReasonUnknownKey      = "unknown_key"
	ReasonBadSecret       = "bad_secret"
	ReasonExpired         = "expired"
	ReasonRevoked         = "revoked"
	ReasonRotated         = "rotated" // used after its rotation overlap ended
	ReasonUnknownConsumer = "unknown_consumer"
	ReasonPartnerChanged  = "partner_changed"
)

// DetailKeyInQuery is what a client that put a key in the URL is told.
const DetailKeyInQuery = "API keys are accepted in the Authorization or X-API-Key header only; this key must now be considered leaked — rotate it."

// queryKeyNames are query parameters that carry credentials by convention.
// A URL ends up in access logs, browser history, Referer headers and proxy
// caches, so a key sent there is refused even before it is checked.
var queryKeyNames = []string{"api_key", "apikey", "api-key", "x-api-key", "key", "access_token"}

// AuthOptions tune an Authenticator. Zero values take the defaults.
type AuthOptions struct {
	// CacheTTL is how long a credential read from the store is reused
	// (default 5s). It bounds how late a change made by another process
	// (expiry moved by a rotation, a revocation without the revocation
	// list) is seen; expiry itself is checked on every request.
	CacheTTL time.Duration
	// NegativeTTL is how long "no such key" is remembered (default 1s), so
	// a key issued on another replica works almost at once.
	NegativeTTL time.Duration
	// CacheSize bounds the cached credentials (default 100000); unknown IDs
	// are bounded at a quarter of it.
	CacheSize int
	// TouchEvery is the least time between two last-used writes for one
	// key (default 30s). TouchQueue bounds the pending writes (default
	// 1024); beyond it they are dropped and counted.
	TouchEvery time.Duration
	TouchQueue int
	// StoreTimeout bounds one store lookup (default 2s).
	StoreTimeout time.Duration
	// ClientIP gives the address recorded as a key's last source; default
	// the peer address. The gateway passes its trusted-proxy-aware one.
	ClientIP func(*http.Request) string
	Log      *slog.Logger
}

// Authenticator verifies API keys. It implements authn.Authenticator.
type Authenticator struct {
	svc          *Service
	cache        *credCache
	touch        *toucher
	clientIP     func(*http.Request) string
	storeTimeout time.Duration
	log          *slog.Logger
	closeOnce    sync.Once
}

var _ authn.Authenticator = (*Authenticator)(nil)

// NewAuthenticator builds an authenticator over the service's store,
// pepper and consumers. Close it to stop its last-used writer; a config
// reload needs only Service.Reconfigure, not a new Authenticator.
func (s *Service) NewAuthenticator(o AuthOptions) (*Authenticator, error) {
	if s.hasher == nil {
		return nil, ErrNoPepper
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = 5 * time.Second
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = time.Second
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 100000
	}
	if o.TouchEvery <= 0 {
		o.TouchEvery = 30 * time.Second
	}
	if o.TouchQueue <= 0 {
		o.TouchQueue = 1024
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 2 * time.Second
	}
	if o.ClientIP == nil {
		o.ClientIP = peerIP
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{svc: s, cache: newCredCache(o.CacheSize, o.CacheTTL, o.NegativeTTL),
		clientIP: o.ClientIP, storeTimeout: o.StoreTimeout, log: o.Log}
	a.touch = newToucher(s.st, o.TouchQueue, o.TouchEvery, o.Log)
	s.mu.Lock()
	s.caches[a.cache] = struct{}{}
	s.mu.Unlock()
	return a, nil
}

// Scheme implements authn.Authenticator.
func (a *Authenticator) Scheme() string { return Scheme }

// Authenticate implements authn.Authenticator.
func (a *Authenticator) Authenticate(r *http.Request) (*authn.Principal, error) {
	if r.URL != nil && r.URL.RawQuery != "" && keyInQuery(r.URL.RawQuery) {
		return nil, authn.BadRequest(Scheme, ReasonKeyInQuery, DetailKeyInQuery)
	}
	key, err := headerKey(r.Header)
	if err != nil {
		return nil, err
	}
	id, err := Parse(key)
	if err != nil {
		// Refused before any lookup: garbage costs no store query.
		if errors.Is(err, ErrChecksum) {
			return nil, authn.Fail(Scheme, ReasonBadChecksum)
		}
		return nil, authn.Fail(Scheme, ReasonBadFormat)
	}
	now := a.svc.now()
	e, err := a.lookup(r.Context(), id, now)
	if err != nil {
		return nil, err
	}
	if e == nil {
		// Spend the same HMAC as a known key would, so response time does
		// not tell an attacker which IDs exist.
		a.svc.hasher.burn(key)
		return nil, authn.Fail(Scheme, ReasonUnknownKey)
	}
	if !a.svc.hasher.verify(key, e.cred.Hash) {
		return nil, authn.Fail(Scheme, ReasonBadSecret)
	}
	c := &e.cred
	if !c.RevokedAt.IsZero() && !now.Before(c.RevokedAt) {
		if strings.HasPrefix(c.RevokedWhy, RotatedPrefix) {
			return nil, authn.Fail(Scheme, ReasonRotated)
		}
		return nil, authn.Fail(Scheme, ReasonRevoked)
	}
	if !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt) {
		return nil, authn.Fail(Scheme, ReasonExpired)
	}
	if e.reason != "" {
		return nil, authn.Fail(Scheme, e.reason)
	}
	a.recordUse(e, now, r)
	p := *e.principal
	return &p, nil
}

// Close stops the last-used writer after flushing what is queued. The
// authenticator keeps authenticating but records no more use.
func (a *Authenticator) Close() error {
	a.closeOnce.Do(func() {
		a.svc.mu.Lock()
		delete(a.svc.caches, a.cache)
		a.svc.mu.Unlock()
		a.touch.close()
	})
	return nil
}

// Stats are counters for metrics.
type Stats struct {
	CachedKeys     int    // credentials in the cache
	TouchesWritten uint64 // last-used writes done
	TouchesDropped uint64 // last-used writes dropped because the queue was full
	TouchErrors    uint64 // last-used writes the store refused
}

// Stats returns the current counters.
func (a *Authenticator) Stats() Stats {
	return Stats{CachedKeys: a.cache.len(), TouchesWritten: a.touch.written.Load(),
		TouchesDropped: a.touch.dropped.Load(), TouchErrors: a.touch.failed.Load()}
}

// headerKey returns the key from Authorization: ApiKey or X-API-Key.
func headerKey(h http.Header) (string, error) {
	var key string
	n := 0
	for _, v := range h["Authorization"] {
		scheme, rest, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, Scheme) {
			continue
		}
		if k := strings.TrimSpace(rest); k != "" {
			if n > 0 && k != key {
				return "", ambiguous()
			}
			key, n = k, n+1
		}
	}
	for _, v := range h["X-Api-Key"] {
		if k := strings.TrimSpace(v); k != "" {
			if n > 0 && k != key {
				return "", ambiguous()
			}
			key, n = k, n+1
		}
	}
	if n == 0 {
		return "", authn.ErrNoCredential
	}
	return key, nil
}

// ambiguous refuses two different keys in one request: which one counts
// would depend on who reads the request (gateway, upstream, a log).
func ambiguous() error {
	return authn.BadRequest(Scheme, ReasonAmbiguous, "Send one API key, in either the Authorization or the X-API-Key header.")
}

// keyInQuery reports whether the raw query carries a credential parameter
// or anything shaped like a Gatehouse key. It splits on ';' as well as '&'
// (some upstreams do) and looks at values both raw and percent-decoded, so
// encoding the key does not hide it.
func keyInQuery(raw string) bool {
	for raw != "" {
		var pair string
		if i := strings.IndexAny(raw, "&;"); i >= 0 {
			pair, raw = raw[:i], raw[i+1:]
		} else {
			pair, raw = raw, ""
		}
		name, val, _ := strings.Cut(pair, "=")
		name, val = unescapeQuery(name), unescapeQuery(val)
		if val != "" {
			for _, k := range queryKeyNames {
				if strings.EqualFold(name, k) {
					return true
				}
			}
		}
		if LooksLikeKey(val) || LooksLikeKey(name) {
			return true
		}
	}
	return false
}

func unescapeQuery(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func peerIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// lookup returns the cached entry for id, reading the store on a miss
// (nil, nil: no such key). Concurrent misses for one ID share one query.
func (a *Authenticator) lookup(ctx context.Context, id string, now time.Time) (*entry, error) {
	sh := a.cache.shard(id)
	nowNs := now.UnixNano()
	sh.mu.RLock()
	e, hit := sh.pos[id]
	negUntil, neg := sh.neg[id]
	sh.mu.RUnlock()
	if hit && nowNs < e.until {
		return e, nil
	}
	if neg && nowNs < negUntil {
		return nil, nil
	}

	sh.mu.Lock()
	if f, ok := sh.inflight[id]; ok {
		sh.mu.Unlock()
		select {
		case <-f.done:
			return f.e, f.err
		case <-ctx.Done():
			return nil, fmt.Errorf("apikey: look up key %s: %w", id, ctx.Err())
		}
	}
	f := &flight{done: make(chan struct{})}
	sh.inflight[id] = f
	gen := sh.gen
	sh.mu.Unlock()

	// The query outlives a cancelled leader: followers wait on its result.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.storeTimeout)
	cred, err := a.svc.st.GetCredential(qctx, id)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		err = nil
	case err != nil:
		err = fmt.Errorf("apikey: look up key %s: %w", id, err)
	case cred.Kind != "" && cred.Kind != authn.KindAPIKey:
		// Another kind of secret (a client secret) is never an API key.
	default:
		f.e = a.newEntry(cred, nowNs)
		if hit {
			f.e.touched.Store(e.touched.Load())
		}
	}
	f.err = err

	sh.mu.Lock()
	delete(sh.inflight, id)
	// A revocation or reload during the query may have made what we read
	// stale: then serve it to this request only, and cache nothing.
	if gen == sh.gen && err == nil {
		if f.e != nil {
			sh.putPos(id, f.e, nowNs, a.cache.perShard)
		} else {
			sh.putNeg(id, nowNs+int64(a.cache.negTTL), nowNs, a.cache.perShard/4+1)
		}
	}
	sh.mu.Unlock()
	close(f.done)
	return f.e, f.err
}

// newEntry precomputes the principal for cred under the current consumer
// configuration, so a cache hit only copies it.
func (a *Authenticator) newEntry(cred store.Credential, nowNs int64) *entry {
	e := &entry{cred: cred, until: nowNs + int64(a.cache.ttl)}
	c, ok := a.svc.policy.Load().consumers[cred.Consumer]
	switch {
	case !ok:
		// The consumer was removed from the config: its keys die with it.
		e.reason = ReasonUnknownConsumer
		return e
	case c.partner != cred.Partner:
		// A key issued under one partner never speaks for another.
		e.reason = ReasonPartnerChanged
		return e
	}
	// The key's scopes, narrowed to what the consumer still holds: taking
	// a scope away from a consumer in config takes it from its keys too.
	scopes := make([]string, 0, len(cred.Scopes))
	for _, sc := range cred.Scopes {
		if c.granted[sc] {
			scopes = append(scopes, sc)
		}
	}
	exp := cred.ExpiresAt
	if !cred.RevokedAt.IsZero() && (exp.IsZero() || cred.RevokedAt.Before(exp)) {
		exp = cred.RevokedAt // inside a rotation overlap
	}
	// Every request shares these slices and the claims map: clipped, so an
	// append by a later stage copies instead of writing into another
	// request's principal. Stages must treat Claims as read-only.
	e.principal = &authn.Principal{Kind: authn.KindAPIKey, Consumer: cred.Consumer, Partner: cred.Partner,
		CredentialID: cred.ID, Scopes: slices.Clip(scopes), Roles: slices.Clip(c.roles), Claims: c.claims, ExpiresAt: exp}
	return e
}

// recordUse queues a last-used write at most once per TouchEvery per key;
// the request never waits for it.
func (a *Authenticator) recordUse(e *entry, now time.Time, r *http.Request) {
	nowNs := now.UnixNano()
	last := e.touched.Load()
	if last != 0 && nowNs-last < int64(a.touch.every) {
		return
	}
	if !e.touched.CompareAndSwap(last, nowNs) {
		return // another request is recording this use
	}
	if !a.touch.enqueue(touch{id: e.cred.ID, at: now, ip: a.clientIP(r)}) {
		e.touched.Store(last) // dropped: let a later request try again
	}
}

// entry is one cached credential.
type entry struct {
	cred      store.Credential
	principal *authn.Principal // nil when reason is set
	reason    string           // refusal that depends on config, not on the key
	until     int64            // unix ns after which the store is read again
	touched   atomic.Int64     // unix ns of the last queued last-used write
}

type flight struct {
	done chan struct{}
	e    *entry
	err  error
}

// credCache is a sharded, bounded, TTL cache of credentials by ID.
type credCache struct {
	shards   [cacheShards]cacheShard
	perShard int
	ttl      time.Duration
	negTTL   time.Duration
}

const cacheShards = 16

type cacheShard struct {
	mu       sync.RWMutex
	pos      map[string]*entry
	neg      map[string]int64 // id → unix ns until which it is known absent
	inflight map[string]*flight
	gen      uint64 // bumped by forget/clear, so in-flight reads do not re-cache stale data
}

func newCredCache(size int, ttl, negTTL time.Duration) *credCache {
	c := &credCache{perShard: max(1, size/cacheShards), ttl: ttl, negTTL: negTTL}
	for i := range c.shards {
		c.shards[i] = cacheShard{pos: map[string]*entry{}, neg: map[string]int64{}, inflight: map[string]*flight{}}
	}
	return c
}

func (c *credCache) shard(id string) *cacheShard {
	var h uint32 = 2166136261
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return &c.shards[h%cacheShards]
}

func (c *credCache) forget(id string) {
	sh := c.shard(id)
	sh.mu.Lock()
	delete(sh.pos, id)
	delete(sh.neg, id)
	sh.gen++
	sh.mu.Unlock()
}

func (c *credCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.pos)
		clear(sh.neg)
		sh.gen++
		sh.mu.Unlock()
	}
}

func (c *credCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.pos)
		sh.mu.RUnlock()
	}
	return n
}

// putPos caches e; when the shard is full it drops expired entries, then
// arbitrary ones, down to 7/8 of the bound. Called with mu held.
func (sh *cacheShard) putPos(id string, e *entry, nowNs int64, bound int) {
	if _, ok := sh.pos[id]; !ok && len(sh.pos) >= bound {
		for k, v := range sh.pos {
			if v.until <= nowNs {
				delete(sh.pos, k)
			}
		}
		for k := range sh.pos {
			if len(sh.pos) < bound-bound/8 {
				break
			}
			delete(sh.pos, k)
		}
	}
	sh.pos[id] = e
	delete(sh.neg, id)
}

// putNeg remembers that id does not exist. Random IDs from a scanner fill
// this set, not the positive one, and it is simply emptied when full.
func (sh *cacheShard) putNeg(id string, until, nowNs int64, bound int) {
	if len(sh.neg) >= bound {
		for k, v := range sh.neg {
			if v <= nowNs {
				delete(sh.neg, k)
			}
		}
		if len(sh.neg) >= bound {
			clear(sh.neg)
		}
	}
	sh.neg[id] = until
}

// toucher writes last-used times off the request path.
type toucher struct {
	st      store.CredentialStore
	ch      chan touch
	every   time.Duration
	log     *slog.Logger
	done    chan struct{}
	stopped chan struct{}
	written atomic.Uint64
	dropped atomic.Uint64
	failed  atomic.Uint64
}

type touch struct {
	id string
	at time.Time
	ip string
}

func newToucher(st store.CredentialStore, queue int, every time.Duration, log *slog.Logger) *toucher {
	t := &toucher{st: st, ch: make(chan touch, queue), every: every, log: log,
		done: make(chan struct{}), stopped: make(chan struct{})}
	go t.run()
	return t
}

func (t *toucher) enqueue(x touch) bool {
	select {
	case <-t.done:
		return false
	default:
	}
	select {
	case t.ch <- x:
		return true
	default:
		t.dropped.Add(1)
		return false
	}
}

func (t *toucher) run() {
	defer close(t.stopped)
	// last coalesces writes per key even when cache entries are replaced.
	last := map[string]time.Time{}
	for {
		select {
		case x := <-t.ch:
			t.write(last, x)
		case <-t.done:
			for {
				select {
				case x := <-t.ch:
					t.write(last, x)
				default:
					return
				}
			}
		}
	}
}

func (t *toucher) write(last map[string]time.Time, x touch) {
	if prev, ok := last[x.id]; ok && x.at.Sub(prev) < t.every {
		return
	}
	if len(last) >= 65536 {
		for k, v := range last {
			if x.at.Sub(v) >= t.every {
				delete(last, k)
			}
		}
		if len(last) >= 65536 {
			clear(last) // worst case: a few extra writes
		}
	}
	last[x.id] = x.at
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := t.st.TouchCredential(ctx, x.id, x.at, x.ip)
	cancel()
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.failed.Add(1)
		t.log.Warn("record API key use", "credential_id", x.id, "error", err.Error())
		return
	}
	t.written.Add(1)
}

func (t *toucher) close() {
	close(t.done)
	<-t.stopped
}
