// Package limit is Gatehouse's rate-limit and quota engine.
//
// Rate limits use GCRA (the generic cell rate algorithm): each key stores one
// number, its theoretical arrival time (TAT), and a decision is exact, O(1)
// and needs no background refill. Three Limiter implementations share one
// piece of arithmetic (gcra.decide), so they answer alike:
//
//   - Local: in-process, sharded, bounded memory (single node).
//   - Redis: one atomic Lua script per decision on Redis server time, shared
//     by every replica (cluster).
//   - Fallback: Redis first; when Redis fails, the configured policy
//     (fail_open to per-replica local limits, or fail_closed).
//
// Several limits on one request go through MultiLimiter.AllowMulti (or the
// AllowAll helper): all must pass, and a request denied by one consumes no
// other's budget. Quotas (calendar day or month in a time zone) are separate
// counters: see QuotaWindow and QuotaCounter.
package limit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

var (
	// ErrInvalidRule means a Rule cannot be enforced (non-positive rate or
	// period, negative burst, or numbers that overflow). Config validation
	// should reject such rules at load; the limiter refuses them too.
	ErrInvalidRule = errors.New("limit: invalid rule")
	// ErrUnavailable means the shared limiter is unreachable and the
	// fail_closed policy applies: the pipeline answers 503.
	ErrUnavailable = errors.New("limit: rate-limit backend unavailable")
)

// Rule is one rate limit: Rate requests per Period on average, with up to
// Burst requests at once. The emission interval is Period/Rate (rounded up
// to the clock's unit, so a limiter never admits more than configured).
// Burst 0 means 1: one request at a time, strictly spaced.
type Rule struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// Result is one decision.
type Result struct {
	Allowed bool
	// Limit is the burst capacity that Remaining counts down from.
	Limit int
	// Remaining is how many further requests would be admitted right now.
	Remaining int
	// RetryAfter is, when denied, how long until one request would conform.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to its full burst (its
	// state then carries no information and may be dropped).
	ResetAfter time.Duration
}

// Limiter is the pipeline's seam (DESIGN.md): may a request under key,
// limited by rule, proceed now? An error means the limiter could not decide
// (see ErrUnavailable); a denial is a Result, not an error.
//
// Keys are the caller's namespace: one key should be used with one rule, so
// build keys that name the limit (e.g. "consumer:acme-billing|orders:getOrder").
type Limiter interface {
	Allow(ctx context.Context, key string, r Rule) (Result, error)
}

// Check is one of several limits that apply to one request.
type Check struct {
	// Policy names the limit for the RateLimit headers.
	Policy string
	Key    string
	Rule   Rule
}

// MultiLimiter decides several limits together.
type MultiLimiter interface {
	Limiter
	// AllowMulti admits the request only if every check conforms, and only
	// then consumes budget (from all of them). results must have
	// len(checks) entries; results[i] receives check i's view: whether that
	// check alone would pass and its remaining budget, which is unchanged
	// when the request as a whole was denied. Checks naming the same key
	// apply one after the other, as if they were separate requests.
	AllowMulti(ctx context.Context, checks []Check, results []Result) (allowed bool, err error)
}

// gcra holds a rule's parameters in one clock unit (ns locally, µs in Redis).
type gcra struct {
	interval int64 // emission interval T
	capacity int64 // burst × T: how far the TAT may run ahead of now
	burst    int
	unit     time.Duration // one clock unit as a Duration
}

// maxCapacity keeps now + capacity + interval far from overflow for any
// clock this package uses (ns since a process epoch, µs since 1970).
const maxCapacity = math.MaxInt64 / 4

func (r Rule) gcra(unit time.Duration) (gcra, error) {
	if r.Rate <= 0 || r.Period <= 0 || r.Burst < 0 {
		return gcra{}, fmt.Errorf("%w: rate %d per %s, burst %d: want rate > 0, period > 0, burst >= 0",
			ErrInvalidRule, r.Rate, r.Period, r.Burst)
	}
	burst := max(r.Burst, 1)
	// T = ceil(Period / Rate) in units: rounding up never admits more than
	// the rule says.
	p := int64(r.Period)
	u := int64(unit)
	q := p / u
	if p%u != 0 {
		q++
	}
	interval := q / int64(r.Rate)
	if q%int64(r.Rate) != 0 {
		interval++
	}
	if interval < 1 || int64(burst) > maxCapacity/interval {
		return gcra{}, fmt.Errorf("%w: rate %d per %s, burst %d is out of range for a %s clock",
			ErrInvalidRule, r.Rate, r.Period, r.Burst, unit)
	}
	return gcra{interval: interval, capacity: int64(burst) * interval, burst: burst, unit: unit}, nil
}

// decide applies GCRA at time now to a key whose stored TAT is tat (an
// absent key is tat = now). It returns the TAT to store if the request is
// admitted and the result. A TAT in the past is the same as none, so an
// idle key needs no state at all; a clock that steps backwards leaves the
// TAT ahead of now, which only ever denies more, never grants extra.
func (g gcra) decide(tat, now int64) (newTAT int64, res Result) {
	if tat < now {
		tat = now
	}
	newTAT = tat + g.interval
	res.Limit = g.burst
	if allowAt := newTAT - g.capacity; allowAt > now {
		res.RetryAfter = time.Duration(allowAt-now) * g.unit
		res.ResetAfter = time.Duration(tat-now) * g.unit
		return tat, res
	}
	res.Allowed = true
	res.Remaining = int((now + g.capacity - newTAT) / g.interval)
	res.ResetAfter = time.Duration(newTAT-now) * g.unit
	return newTAT, res
}

// peek is check i's view when the request as a whole was denied: whether it
// alone would pass, and its budget left untouched.
func (g gcra) peek(tat, now int64) Result {
	if tat < now {
		tat = now
	}
	_, res := g.decide(tat, now)
	if res.Allowed {
		res.Remaining = int(max(0, (now+g.capacity-tat)/g.interval))
		res.ResetAfter = time.Duration(tat-now) * g.unit
	}
	return res
}
