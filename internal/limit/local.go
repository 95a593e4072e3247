package limit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// Defaults of LocalOptions.
const (
	DefaultLocalShards  = 64
	DefaultLocalMaxKeys = 1 << 20
)

// LocalOptions tunes NewLocal. The zero value is usable.
type LocalOptions struct {
	// MaxKeys bounds the number of keys tracked (default DefaultLocalMaxKeys).
	// Measured: about 76 bytes of heap per key with 16-byte keys, so the
	// default caps the limiter near 80 MiB under the worst flood. It is
	// split evenly over shards.
	MaxKeys int
	// Shards is the number of independently locked maps, rounded up to a
	// power of two (default DefaultLocalShards).
	Shards int
	// Now is the clock (default: the monotonic clock, immune to wall-clock
	// steps). Tests inject a fake; a clock that steps backwards is safe (it
	// only denies more).
	Now func() time.Time
}

// Local is an exact in-process GCRA limiter: one TAT (int64 ns) per key in
// a sharded map, each shard behind its own mutex.
//
// Memory is bounded by MaxKeys. When a shard is full, keys whose TAT has
// passed are dropped first: they carry no state, so an evicted idle key
// behaves exactly like a key never seen. If the shard is still more than
// 7/8 full of live keys (a flood of distinct keys, e.g. spoofed or
// botnet IPs), the keys with the oldest TATs go, down to 7/8. The worst case
// is that such an evicted live key gets a fresh budget early; the oldest TAT
// is the one closest to being full again, so that extra is the smallest
// possible, and memory stays bounded either way. Eviction scans the shard
// once per perShard/8 new keys, so its cost amortises to O(1) per insert.
type Local struct {
	shards   []localShard
	mask     uint64
	seed     maphash.Seed
	perShard int
	clock    func() time.Time // nil: the monotonic clock
	epoch    time.Time
}

type localShard struct {
	mu      sync.Mutex
	tats    map[string]int64
	scratch []int64 // TATs gathered for eviction; allocated on first use
	evicted uint64
	_       [64]byte // keep neighbouring shards' mutexes off one cache line
}

var _ MultiLimiter = (*Local)(nil)

// NewLocal returns an empty in-process limiter.
func NewLocal(opts LocalOptions) *Local {
	n := opts.Shards
	if n <= 0 {
		n = DefaultLocalShards
	}
	pow := 1
	for pow < n {
		pow <<= 1
	}
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultLocalMaxKeys
	}
	per := max((maxKeys+pow-1)/pow, 8)
	clock := opts.Now
	epoch := time.Now()
	if clock != nil {
		epoch = clock()
	}
	l := &Local{
		shards:   make([]localShard, pow),
		mask:     uint64(pow - 1),
		seed:     maphash.MakeSeed(),
		perShard: per,
		clock:    clock,
		epoch:    epoch,
	}
	for i := range l.shards {
		l.shards[i].tats = make(map[string]int64)
	}
	return l
}

// now is nanoseconds since the limiter's epoch. Without an injected clock
// it reads only the monotonic clock (time.Since's fast path, half the cost
// of time.Now), so wall-clock steps do not matter.
func (l *Local) now() int64 {
	if l.clock == nil {
		return int64(time.Since(l.epoch))
	}
	return int64(l.clock().Sub(l.epoch))
}

func (l *Local) shardIndex(key string) int {
	return int(maphash.String(l.seed, key) & l.mask)
}

// Allow implements Limiter. It never blocks on I/O and ignores ctx.
func (l *Local) Allow(_ context.Context, key string, r Rule) (Result, error) {
	g, err := r.gcra(time.Nanosecond)
	if err != nil {
		return Result{}, err
	}
	now := l.now()
	s := &l.shards[l.shardIndex(key)]
	s.mu.Lock()
	tat, ok := s.tats[key]
	if !ok {
		tat = now
	}
	newTAT, res := g.decide(tat, now)
	if res.Allowed {
		if !ok && len(s.tats) >= l.perShard {
			s.makeRoom(now, l.perShard)
		}
		s.tats[key] = newTAT
	}
	s.mu.Unlock()
	return res, nil
}

// maxStackChecks is how many checks AllowMulti handles without allocating.
const maxStackChecks = 8

// AllowMulti implements MultiLimiter: the shards of all keys are locked (in
// index order, so concurrent calls cannot deadlock), every check is decided
// on the current TATs, and the new TATs are stored only if all pass.
func (l *Local) AllowMulti(_ context.Context, checks []Check, results []Result) (bool, error) {
	n := len(checks)
	if len(results) != n {
		panic("limit: AllowMulti: len(results) != len(checks)")
	}
	var (
		gBuf   [maxStackChecks]gcra
		idxBuf [maxStackChecks]int
		tatBuf [maxStackChecks]int64
		newBuf [maxStackChecks]int64
	)
	gs, idx, tats, newTATs := gBuf[:0], idxBuf[:0], tatBuf[:0], newBuf[:0]
	if n > maxStackChecks {
		gs, idx = make([]gcra, 0, n), make([]int, 0, n)
		tats, newTATs = make([]int64, 0, n), make([]int64, 0, n)
	}
	for _, c := range checks {
		g, err := c.Rule.gcra(time.Nanosecond)
		if err != nil {
			return false, err
		}
		gs = append(gs, g)
		idx = append(idx, l.shardIndex(c.Key))
	}
	tats, newTATs = tats[:n], newTATs[:n]

	l.lockShards(idx, true)
	defer l.lockShards(idx, false)

	now := l.now()
	allowed := true
	for i, c := range checks {
		tat, ok := l.shards[idx[i]].tats[c.Key]
		if !ok {
			tat = now
		}
		// An earlier check on the same key in this call counts first.
		for j := i - 1; j >= 0; j-- {
			if checks[j].Key == c.Key {
				tat = newTATs[j]
				break
			}
		}
		tats[i] = tat
		newTATs[i], results[i] = gs[i].decide(tat, now)
		allowed = allowed && results[i].Allowed
	}
	if !allowed {
		for i := range checks {
			results[i] = gs[i].peek(tats[i], now)
		}
		return false, nil
	}
	for i, c := range checks {
		s := &l.shards[idx[i]]
		if _, ok := s.tats[c.Key]; !ok && len(s.tats) >= l.perShard {
			s.makeRoom(now, l.perShard)
		}
		s.tats[c.Key] = newTATs[i]
	}
	return true, nil
}

// lockShards locks (or unlocks) each distinct shard in idx, in ascending
// order.
func (l *Local) lockShards(idx []int, lock bool) {
	prev := -1
	for {
		next := -1
		for _, i := range idx {
			if i > prev && (next < 0 || i < next) {
				next = i
			}
		}
		if next < 0 {
			return
		}
		if lock {
			l.shards[next].mu.Lock()
		} else {
			l.shards[next].mu.Unlock()
		}
		prev = next
	}
}

// Len returns the number of keys currently tracked.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.tats)
		s.mu.Unlock()
	}
	return n
}

// Evicted returns how many live keys (TAT still ahead) were evicted to make
// room: a non-zero and growing value means MaxKeys is too small for the
// traffic, or a flood of distinct keys is under way.
func (l *Local) Evicted() uint64 {
	var n uint64
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.evicted
		s.mu.Unlock()
	}
	return n
}

// MaxKeys returns the bound on tracked keys.
func (l *Local) MaxKeys() int { return l.perShard * len(l.shards) }

// makeRoom runs with s.mu held on a full shard. It drops every key whose
// TAT has passed and, if the shard is still above its low-water mark
// (7/8 of perShard), the live keys with the oldest TATs down to it.
func (s *localShard) makeRoom(now int64, perShard int) {
	low := perShard - perShard/8
	if s.scratch == nil {
		s.scratch = make([]int64, 0, perShard)
	}
	live := s.scratch[:0]
	for k, t := range s.tats {
		if t <= now {
			delete(s.tats, k)
		} else {
			live = append(live, t)
		}
	}
	excess := len(s.tats) - low
	if excess <= 0 {
		return
	}
	// The excess-th smallest TAT is the cut: delete everything below it,
	// then entries equal to it until enough are gone.
	cut := selectKth(live, excess-1)
	for k, t := range s.tats {
		if excess == 0 {
			break
		}
		if t < cut {
			delete(s.tats, k)
			excess--
		}
	}
	for k, t := range s.tats {
		if excess == 0 {
			break
		}
		if t == cut {
			delete(s.tats, k)
			excess--
		}
	}
	s.evicted += uint64(len(live) - len(s.tats))
}

// selectKth returns the k-th smallest value of a (0-based), reordering a.
// Three-way partitioning keeps it linear when many values are equal (a
// flood decided at one instant stores identical TATs).
func selectKth(a []int64, k int) int64 {
	lo, hi := 0, len(a)-1
	for lo < hi {
		// Median of three as pivot.
		m := lo + (hi-lo)/2
		x, y, z := a[lo], a[m], a[hi]
		p := max(min(x, y), min(max(x, y), z))
		lt, i, gt := lo, lo, hi
		for i <= gt {
			switch v := a[i]; {
			case v < p:
				a[lt], a[i] = a[i], a[lt]
				lt++
				i++
			case v > p:
				a[i], a[gt] = a[gt], a[i]
				gt--
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt - 1
		case k > gt:
			lo = gt + 1
		default:
			return p
		}
	}
	return a[lo]
}
