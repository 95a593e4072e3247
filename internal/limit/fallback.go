package limit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// FailurePolicy says what happens to requests while the shared limiter
// (Redis) cannot decide.
type FailurePolicy int

const (
	// FailOpen keeps serving, limited by this replica's local limiter with
	// each rule divided by the expected replica count.
	FailOpen FailurePolicy = iota + 1
	// FailClosed refuses limited requests with ErrUnavailable (503).
	FailClosed
)

// ParseFailurePolicy reads the config spelling: "fail_open" or "fail_closed".
func ParseFailurePolicy(s string) (FailurePolicy, error) {
	switch s {
	case "fail_open":
		return FailOpen, nil
	case "fail_closed":
		return FailClosed, nil
	}
	return 0, fmt.Errorf("limit: unknown failure policy %q: want fail_open or fail_closed", s)
}

func (p FailurePolicy) String() string {
	switch p {
	case FailOpen:
		return "fail_open"
	case FailClosed:
		return "fail_closed"
	}
	return fmt.Sprintf("FailurePolicy(%d)", int(p))
}

// DefaultRetryInterval is how long a Fallback leaves the primary alone after
// it failed, before one request probes it again.
const DefaultRetryInterval = 250 * time.Millisecond

// FallbackOptions configures NewFallback.
type FallbackOptions struct {
	Policy FailurePolicy
	// ExpectedReplicas divides each rule under FailOpen (rate and burst,
	// each rounded up, at least 1), so N replicas limiting alone admit about
	// what the shared limit would. Values below 1 mean 1.
	ExpectedReplicas int
	// OnFail is called with the cause each time the primary fails (at most
	// about once per RetryInterval while it stays down, plus requests in
	// flight at the moment it broke). Wire it to an alert metric and a
	// rate-limited log. It must not block.
	OnFail func(error)
	// OnRecover, if set, is called once when the primary answers again.
	OnRecover func()
	// RetryInterval (default DefaultRetryInterval) is how long requests skip
	// the primary after a failure; then one request probes it while the
	// others keep using the policy, so a stalled Redis costs at most one
	// request per interval its timeout.
	RetryInterval time.Duration
}

// Fallback puts a failure policy in front of a shared limiter. Requests go
// to the primary; when it errors (unreachable, timeout, script error) the
// policy answers, and the primary is probed again every RetryInterval, so
// recovery needs no restart. A rule the primary rejects as invalid, or a
// caller's own cancelled context, is returned as is: neither says anything
// about Redis.
type Fallback struct {
	primary  MultiLimiter
	local    *Local
	policy   FailurePolicy
	replicas int
	onFail   func(error)
	onRecov  func()
	retry    int64 // ns

	epoch time.Time
	// downUntil is 0 while the primary is healthy; otherwise the time
	// (ns since epoch) before which requests do not try it.
	downUntil atomic.Int64
}

var _ MultiLimiter = (*Fallback)(nil)

// NewFallback wraps primary (normally a *Redis). local is the limiter used
// under FailOpen; give it its own Local, not the one of single-node mode.
func NewFallback(primary MultiLimiter, local *Local, opts FallbackOptions) (*Fallback, error) {
	if primary == nil {
		return nil, errors.New("limit: NewFallback: nil primary")
	}
	switch opts.Policy {
	case FailOpen:
		if local == nil {
			return nil, errors.New("limit: NewFallback: fail_open needs a local limiter")
		}
	case FailClosed:
	default:
		return nil, fmt.Errorf("limit: NewFallback: failure policy %v: want FailOpen or FailClosed", opts.Policy)
	}
	retry := opts.RetryInterval
	if retry <= 0 {
		retry = DefaultRetryInterval
	}
	return &Fallback{
		primary:  primary,
		local:    local,
		policy:   opts.Policy,
		replicas: max(opts.ExpectedReplicas, 1),
		onFail:   opts.OnFail,
		onRecov:  opts.OnRecover,
		retry:    int64(retry),
		epoch:    time.Now(),
	}, nil
}

// Degraded reports whether the primary is currently considered down (the
// failure policy is answering). Export it as a gauge.
func (f *Fallback) Degraded() bool { return f.downUntil.Load() != 0 }

// Allow implements Limiter.
func (f *Fallback) Allow(ctx context.Context, key string, r Rule) (Result, error) {
	var res [1]Result
	_, err := f.AllowMulti(ctx, []Check{{Key: key, Rule: r}}, res[:])
	return res[0], err
}

// AllowMulti implements MultiLimiter.
func (f *Fallback) AllowMulti(ctx context.Context, checks []Check, results []Result) (bool, error) {
	if !f.tryPrimary() {
		return f.degraded(ctx, checks, results, errSkipped)
	}
	ok, err := f.primary.AllowMulti(ctx, checks, results)
	if err == nil {
		if f.downUntil.Swap(0) != 0 && f.onRecov != nil {
			f.onRecov()
		}
		return ok, nil
	}
	if errors.Is(err, ErrInvalidRule) || ctx.Err() != nil {
		return false, err
	}
	f.downUntil.Store(f.now() + f.retry)
	if f.onFail != nil {
		f.onFail(err)
	}
	return f.degraded(ctx, checks, results, err)
}

// errSkipped is the cause reported while the primary is skipped between
// probes.
var errSkipped = errors.New("shared limiter down; next probe pending")

func (f *Fallback) now() int64 { return max(int64(time.Since(f.epoch)), 1) }

// tryPrimary says whether this request should ask the primary: always when
// it is healthy; when it is down, only the one request that claims the
// probe after RetryInterval.
func (f *Fallback) tryPrimary() bool {
	d := f.downUntil.Load()
	if d == 0 {
		return true
	}
	now := f.now()
	if now < d {
		return false
	}
	return f.downUntil.CompareAndSwap(d, now+f.retry)
}

func (f *Fallback) degraded(ctx context.Context, checks []Check, results []Result, cause error) (bool, error) {
	if f.policy == FailClosed {
		for i := range results {
			results[i] = Result{}
		}
		return false, fmt.Errorf("%w: %w", ErrUnavailable, cause)
	}
	var buf [maxStackChecks]Check
	local := buf[:0]
	if len(checks) > maxStackChecks {
		local = make([]Check, 0, len(checks))
	}
	for _, c := range checks {
		c.Rule = f.share(c.Rule)
		local = append(local, c)
	}
	return f.local.AllowMulti(ctx, local, results)
}

// share is this replica's part of r when each replica limits alone.
func (f *Fallback) share(r Rule) Rule {
	if f.replicas == 1 {
		return r
	}
	r.Rate = max(ceilDiv(r.Rate, f.replicas), 1)
	r.Burst = max(ceilDiv(max(r.Burst, 1), f.replicas), 1)
	return r
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
