// Package revoke keeps the revocation list every request is checked against:
// revoked credentials, token IDs (jti), whole consumers and whole partners.
//
// The store is the only source of truth. A List holds an in-memory copy so
// the per-request check costs a few map lookups and no I/O, and keeps that
// copy current three ways:
//
//   - Revoke writes the store first, then applies the entry locally at once,
//     so the replica that revoked enforces it on its very next request;
//   - a Notifier (Redis pub/sub in a cluster) wakes the other replicas, which
//     then read the new entries from the store within milliseconds;
//   - every replica also polls the store (RevocationsSince its last seen Seq)
//     on a fixed interval, so a lost notice, or Redis being down, delays a
//     revocation by at most one poll interval and never loses it.
//
// A notice carries no entry: it only says "look at the store". A forged or
// replayed notice can therefore cost one extra store read, but can neither
// add nor remove a revocation. Entries are never removed except by expiry.
//
// # Memory bound
//
// Every entry of a token expires when the token would have (the caller
// passes ExpiresAt), and expired entries are pruned locally and purged from
// the store, so the list holds what is revoked *and still usable*: for
// short-lived tokens, a few minutes' worth. Credentials, consumers and
// partners revoked without an expiry stay for good.
//
// On top of that, Options.MaxEntries (default 1,000,000; measured at about
// 120 bytes of heap per expiring entry with a 36-byte subject, so ~120 MB)
// caps the list.
// Revoke refuses a new entry beyond the cap with ErrFull *before* writing
// anything, so the caller learns at once and can revoke at a coarser grain
// (the consumer or partner instead of each token) — the right answer to a
// mass revocation anyway. Entries that reach a List from the store (written
// by another replica or the CLI) are applied even past the cap, because a
// revocation in force must never be silently dropped; Sync then reports
// ErrFull so the overflow is logged loudly. The real bound is therefore
// MaxEntries plus whatever concurrent writers add between two checks.
package revoke

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store"
)

// ErrFull is returned when the revocation list has reached Options.MaxEntries.
var ErrFull = errors.New("revoke: revocation list is full")

// Defaults for Options.
const (
	DefaultMaxEntries = 1_000_000
	DefaultPurgeEvery = 10 * time.Minute
	// DefaultPurgeGrace keeps expired entries in the store a little longer
	// than their expiry, so a replica whose clock runs behind the purging
	// one's still finds them.
	DefaultPurgeGrace = 5 * time.Minute
	// MaxSubjectBytes bounds one entry's subject (credential IDs, jti,
	// names are all far shorter).
	MaxSubjectBytes = 1024
	// notifyTimeout bounds the notice sent after a Revoke: the store poll
	// is the fallback, so a slow Redis must not slow the revocation down.
	notifyTimeout = time.Second
)

// Notifier tells other replicas that the store holds new revocations.
// Implementations are safe for concurrent use.
type Notifier interface {
	// Notify announces a new revocation. It carries no entry on purpose:
	// receivers read entries from the store only.
	Notify(ctx context.Context) error
	// Listen calls wake whenever another replica may have revoked
	// something, and once after every (re)connection, since notices sent
	// while disconnected are lost. It reconnects with backoff on its own
	// and returns when ctx is done.
	Listen(ctx context.Context, wake func())
}

// Options tune a List. The zero value is a single-node list polling every
// config.DefaultRevocationPoll.
type Options struct {
	// Poll is the store poll interval (config identity.revocation_poll).
	Poll time.Duration
	// PurgeEvery is how often expired entries are purged from the store;
	// PurgeGrace is how long past expiry they are kept there.
	PurgeEvery time.Duration
	PurgeGrace time.Duration
	// MaxEntries caps the list (see the package comment).
	MaxEntries int
	// Notifier propagates revocations between replicas; nil on a single node.
	Notifier Notifier
	// Logger receives propagation warnings; nil means slog.Default().
	Logger *slog.Logger
	// Clock replaces time.Now (tests).
	Clock func() time.Time
}

// kind indexes of List.byKind.
const (
	kCredential = iota
	kToken
	kConsumer
	kPartner
	kNetwork
	numKinds
)

var kindNames = [numKinds]string{store.RevokeCredential, store.RevokeToken, store.RevokeConsumer, store.RevokePartner, store.RevokeNetwork}

func kindIndex(kind string) (int, bool) {
	for i, k := range kindNames {
		if k == kind {
			return i, true
		}
	}
	return 0, false
}

// List is the in-memory revocation list of one gateway process. It is safe
// for concurrent use.
type List struct {
	store    store.RevocationStore
	notifier Notifier
	log      *slog.Logger
	now      func() time.Time
	poll     time.Duration
	purge    time.Duration
	grace    time.Duration
	max      int

	// count mirrors the number of entries so the common case (nothing
	// revoked for anyone) skips the lock entirely.
	count atomic.Int64

	mu sync.RWMutex
	// byKind maps subject → expiry in Unix nanoseconds (0: never).
	byKind   [numKinds]map[string]int64
	expiring expiryHeap

	syncMu   sync.Mutex // serialises Sync so lastSeq only moves forward
	lastSeq  int64
	lastSync atomic.Int64 // Unix nanoseconds of the last successful Sync

	kick    chan struct{}
	running atomic.Bool

	// nets is the parsed form of byKind[kNetwork], rebuilt on change, so
	// BlockedIP reads it without the lock.
	nets atomic.Pointer[[]blockedNet]
}

type blockedNet struct {
	prefix netip.Prefix
	exp    int64 // Unix nanoseconds, 0: never
}

// New returns an empty List over st. Call Sync (or Run) before serving.
func New(st store.RevocationStore, o Options) *List {
	l := &List{
		store:    st,
		notifier: o.Notifier,
		log:      o.Logger,
		now:      o.Clock,
		poll:     o.Poll,
		purge:    o.PurgeEvery,
		grace:    o.PurgeGrace,
		max:      o.MaxEntries,
		kick:     make(chan struct{}, 1),
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.poll <= 0 {
		l.poll = config.DefaultRevocationPoll
	}
	if l.purge <= 0 {
		l.purge = DefaultPurgeEvery
	}
	if l.grace <= 0 {
		l.grace = DefaultPurgeGrace
	}
	if l.max <= 0 {
		l.max = DefaultMaxEntries
	}
	for i := range l.byKind {
		l.byKind[i] = make(map[string]int64)
	}
	return l
}

// Revoked reports whether p's credential, token, consumer or partner is on
// the list and not yet expired, and if so which kind matched (one of the
// store.Revoke* constants). It does no I/O and does not allocate.
func (l *List) Revoked(p *authn.Principal) (bool, string) {
	if p == nil || l.count.Load() == 0 {
		return false, ""
	}
	subjects := [numKinds]string{p.CredentialID, p.TokenID, p.Consumer, p.Partner, ""}
	var now int64
	l.mu.RLock()
	defer l.mu.RUnlock()
	for i, s := range subjects {
		if s == "" {
			continue
		}
		exp, ok := l.byKind[i][s]
		if !ok {
			continue
		}
		if exp != 0 {
			if now == 0 {
				now = l.now().UnixNano()
			}
			// In force up to and including its expiry, as in the store.
			if now > exp {
				continue
			}
		}
		return true, kindNames[i]
	}
	return false, ""
}

// Len returns the number of entries held, expired ones not yet pruned included.
func (l *List) Len() int { return int(l.count.Load()) }

// LastSync returns when the list last caught up with the store (zero
// before the first successful Sync). A health check can flag a replica
// whose copy has gone stale because the store is unreachable.
func (l *List) LastSync() time.Time {
	ns := l.lastSync.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Revoke records r: in the store first (so it survives restarts and reaches
// every replica through the poll), then locally at once, then it notifies
// the other replicas. A failed notice is logged, not returned: the poll
// still propagates the entry. When the store write fails nothing changes
// and the error is returned, so a nil error means the revocation is durable.
//
// r.ExpiresAt should be when the revoked credential or token would have
// expired anyway (zero: never).
func (l *List) Revoke(ctx context.Context, r store.Revocation) error {
	idx, ok := kindIndex(r.Kind)
	if !ok {
		return fmt.Errorf("revoke: unknown kind %q (want %s, %s, %s, %s or %s)", r.Kind,
			store.RevokeCredential, store.RevokeToken, store.RevokeConsumer, store.RevokePartner, store.RevokeNetwork)
	}
	if idx == kNetwork {
		p, err := netip.ParsePrefix(r.Subject)
		if err != nil || p != p.Masked() {
			return fmt.Errorf("revoke: network %q is not a canonical CIDR like 203.0.113.0/24", r.Subject)
		}
	}
	if r.Subject == "" {
		return errors.New("revoke: empty subject")
	}
	if len(r.Subject) > MaxSubjectBytes {
		return fmt.Errorf("revoke: subject longer than %d bytes", MaxSubjectBytes)
	}
	if !l.admits(idx, r.Subject) && (l.Prune() == 0 || !l.admits(idx, r.Subject)) {
		return fmt.Errorf("%w: %d entries in force (limit %d): revoke the consumer or partner instead of single tokens, or raise the limit",
			ErrFull, l.Len(), l.max)
	}
	if err := l.store.AddRevocation(ctx, r); err != nil {
		return fmt.Errorf("revoke %s %s: %w", r.Kind, r.Subject, err)
	}
	l.apply(idx, r.Subject, r.ExpiresAt)
	if l.notifier != nil {
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
		err := l.notifier.Notify(nctx)
		cancel()
		if err != nil {
			l.log.Warn("revocation notice not sent; other replicas will see it at their next store poll",
				"kind", r.Kind, "poll", l.poll, "err", err)
		}
	}
	return nil
}

// admits reports whether an entry for subject fits: it exists already (an
// update) or the list is below its cap.
func (l *List) admits(idx int, subject string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if _, ok := l.byKind[idx][subject]; ok {
		return true
	}
	return l.Len() < l.max
}

// apply merges one entry. As in the store, the later expiry wins (zero,
// never, being the latest): an entry can be extended, never shortened.
func (l *List) apply(idx int, subject string, expiresAt time.Time) {
	exp := expiryNanos(expiresAt)
	if exp != 0 && exp < l.now().UnixNano() {
		return // already over; nothing to enforce
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if idx == kNetwork {
		defer l.rebuildNets()
	}
	m := l.byKind[idx]
	old, exists := m[subject]
	if exists && (old == 0 || (exp != 0 && exp <= old)) {
		return
	}
	m[subject] = exp
	if !exists {
		l.count.Add(1)
	}
	if exp != 0 {
		heap.Push(&l.expiring, expiryItem{exp: exp, kind: uint8(idx), subject: subject})
	}
}

// end removes an entry the store says is over: lifted (or expired). Only
// entries read from the store end early; the store is the source of truth.
func (l *List) end(idx int, subject string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.byKind[idx][subject]; ok {
		delete(l.byKind[idx], subject)
		l.count.Add(-1)
		if idx == kNetwork {
			l.rebuildNets()
		}
	}
}

// rebuildNets republishes the blocked networks. Called with l.mu held.
func (l *List) rebuildNets() {
	nets := make([]blockedNet, 0, len(l.byKind[kNetwork]))
	for s, exp := range l.byKind[kNetwork] {
		if p, err := netip.ParsePrefix(s); err == nil {
			nets = append(nets, blockedNet{prefix: p, exp: exp})
		}
	}
	l.nets.Store(&nets)
}

// Blocking reports whether any network is blocked, so callers can skip
// parsing the client address when none is.
func (l *List) Blocking() bool {
	if l == nil {
		return false
	}
	nets := l.nets.Load()
	return nets != nil && len(*nets) > 0
}

// BlockedIP reports whether addr is in a blocked network in force. It does
// no I/O, takes no lock and does not allocate.
func (l *List) BlockedIP(addr netip.Addr) bool {
	if l == nil {
		return false
	}
	nets := l.nets.Load()
	if nets == nil || len(*nets) == 0 || !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	var now int64
	for _, n := range *nets {
		if !n.prefix.Contains(addr) {
			continue
		}
		if n.exp != 0 {
			if now == 0 {
				now = l.now().UnixNano()
			}
			if now > n.exp {
				continue
			}
		}
		return true
	}
	return false
}

// Lift ends a revocation early: the explicit re-enable after an incident.
// Like Revoke it writes the store first, applies locally, then notifies.
func (l *List) Lift(ctx context.Context, kind, subject, by, reason string) error {
	idx, ok := kindIndex(kind)
	if !ok {
		return fmt.Errorf("revoke: unknown kind %q", kind)
	}
	if err := l.store.LiftRevocation(ctx, kind, subject, l.now(), by, reason); err != nil {
		return fmt.Errorf("lift %s %s: %w", kind, subject, err)
	}
	l.end(idx, subject)
	if l.notifier != nil {
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
		err := l.notifier.Notify(nctx)
		cancel()
		if err != nil {
			l.log.Warn("lift notice not sent; other replicas will see it at their next store poll", "kind", kind, "err", err)
		}
	}
	return nil
}

// expiryNanos maps an expiry to Unix nanoseconds, 0 meaning never. Times
// are normalised as the store keeps them, so local and stored entries
// expire at the same instant.
func expiryNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	ns := store.NormalizeTime(t).UnixNano()
	if ns == 0 {
		ns = 1 // the Unix epoch itself, not "never"
	}
	return ns
}

// Sync reads the entries added to the store since the last Sync and applies
// them. Call it once before serving, so a replica never serves with an
// empty list; Run calls it on every poll and notice. Entries are applied
// even past MaxEntries, after which Sync returns an error wrapping ErrFull.
func (l *List) Sync(ctx context.Context) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	revs, err := l.store.RevocationsSince(ctx, l.lastSeq)
	if err != nil {
		return fmt.Errorf("revoke: read revocations since seq %d: %w", l.lastSeq, err)
	}
	now := l.now().UnixNano()
	for _, r := range revs {
		if idx, ok := kindIndex(r.Kind); ok {
			if exp := expiryNanos(r.ExpiresAt); exp != 0 && exp < now {
				// Over: lifted by an operator (or expired). The row is the
				// entry's current state, so drop what we hold.
				l.end(idx, r.Subject)
				continue
			}
			l.apply(idx, r.Subject, r.ExpiresAt)
		} else {
			// Written by a newer version; refusing to start over it would
			// be worse than not enforcing a kind this build cannot match.
			l.log.Warn("revocation of unknown kind ignored", "kind", r.Kind, "seq", r.Seq)
		}
		if r.Seq > l.lastSeq {
			l.lastSeq = r.Seq
		}
	}
	l.lastSync.Store(l.now().UnixNano())
	if n := l.Len(); n > l.max {
		return fmt.Errorf("%w: %d entries in force exceed the limit of %d; all are enforced, but memory is past its budget",
			ErrFull, n, l.max)
	}
	return nil
}

// Prune drops entries that have expired. Run calls it on every poll; it
// only changes memory use, since Revoked ignores expired entries anyway.
func (l *List) Prune() int {
	const batch = 4096 // bound the time the write lock is held
	pruned := 0
	for {
		now := l.now().UnixNano()
		n, more := l.pruneBatch(now, batch)
		pruned += n
		if !more {
			return pruned
		}
	}
}

func (l *List) pruneBatch(now int64, batch int) (pruned int, more bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range batch {
		if len(l.expiring) == 0 || l.expiring[0].exp >= now {
			return pruned, false
		}
		it := heap.Pop(&l.expiring).(expiryItem)
		m := l.byKind[it.kind]
		// An extended entry left a stale item behind: only the item
		// matching the current expiry deletes.
		if exp, ok := m[it.subject]; ok && exp == it.exp {
			delete(m, it.subject)
			l.count.Add(-1)
			pruned++
			if it.kind == kNetwork {
				l.rebuildNets()
			}
		}
	}
	return pruned, true
}

// Run keeps the list current until ctx is done: a first Sync, then one on
// every poll tick and every notice, pruning expired entries and purging
// them from the store now and then. Store errors are logged and retried at
// the next tick; the list keeps enforcing what it has. Run returns nil when
// ctx is done, or an error if it is already running.
func (l *List) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("revoke: Run called twice")
	}
	defer l.running.Store(false)

	var wg sync.WaitGroup
	defer wg.Wait()
	if l.notifier != nil {
		wg.Go(func() { l.notifier.Listen(ctx, l.wake) })
	}

	poll := time.NewTicker(l.poll)
	defer poll.Stop()
	purge := time.NewTicker(l.purge)
	defer purge.Stop()

	failing, full := false, false // log transitions, not every tick
	syncNow := func() {
		err := l.Sync(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrFull) {
			if !full {
				l.log.Error("revocation list over its memory budget", "entries", l.Len(), "err", err)
			}
			full, err = true, nil // the read itself worked
		} else if err == nil {
			full = false
		}
		switch {
		case err != nil && !failing:
			failing = true
			l.log.Warn("revocation store unreachable; enforcing the last known list", "err", err)
		case err != nil:
			l.log.Debug("revocation store still unreachable", "err", err)
		case failing:
			failing = false
			l.log.Info("revocation store reachable again")
		}
	}
	syncNow()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.kick:
			syncNow()
		case <-poll.C:
			syncNow()
			l.Prune()
		case <-purge.C:
			if n, err := l.store.PurgeExpiredRevocations(ctx, l.now().Add(-l.grace)); err != nil {
				if ctx.Err() == nil {
					l.log.Warn("purge expired revocations", "err", err)
				}
			} else if n > 0 {
				l.log.Debug("purged expired revocations", "count", n)
			}
		}
	}
}

// wake asks Run for a Sync; bursts of notices coalesce into one.
func (l *List) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// expiryHeap orders expiring entries, soonest first, so pruning touches
// only what has expired instead of sweeping the whole list.
type expiryItem struct {
	exp     int64
	kind    uint8
	subject string // shares its bytes with the map key
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = expiryItem{}
	*h = old[:len(old)-1]
	return it
}
