package limit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Local and the quota counters.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// TestGCRAMath drives the arithmetic through Local with a fake clock: each
// step sets the clock to an offset from the start and expects an exact
// Result.
func TestGCRAMath(t *testing.T) {
	const ms = time.Millisecond
	type step struct {
		at   time.Duration
		want Result
	}
	allow := func(rem, limit int, reset time.Duration) Result {
		return Result{Allowed: true, Limit: limit, Remaining: rem, ResetAfter: reset}
	}
	deny := func(limit int, retry, reset time.Duration) Result {
		return Result{Limit: limit, RetryAfter: retry, ResetAfter: reset}
	}
	tests := []struct {
		name  string
		rule  Rule
		steps []step
	}{
		{
			name: "burst at once then denied then steady",
			rule: Rule{Rate: 10, Period: time.Second, Burst: 3},
			steps: []step{
				{0, allow(2, 3, 100*ms)},
				{0, allow(1, 3, 200*ms)},
				{0, allow(0, 3, 300*ms)},
				{0, deny(3, 100*ms, 300*ms)},
				{99 * ms, deny(3, 1*ms, 201*ms)},
				{100 * ms, allow(0, 3, 300*ms)},
				{100 * ms, deny(3, 100*ms, 300*ms)},
				{250 * ms, allow(0, 3, 250*ms)},
			},
		},
		{
			name: "burst 0 means 1: exact spacing to the nanosecond",
			rule: Rule{Rate: 5, Period: time.Second},
			steps: []step{
				{0, allow(0, 1, 200*ms)},
				{200*ms - 1, deny(1, 1, 1)},
				{200 * ms, allow(0, 1, 200*ms)},
				{400 * ms, allow(0, 1, 200*ms)},
				{401 * ms, deny(1, 199*ms, 199*ms)},
				{600 * ms, allow(0, 1, 200*ms)},
			},
		},
		{
			name: "long idle gap restores exactly the burst",
			rule: Rule{Rate: 1, Period: time.Minute, Burst: 2},
			steps: []step{
				{0, allow(1, 2, time.Minute)},
				{0, allow(0, 2, 2*time.Minute)},
				{0, deny(2, time.Minute, 2*time.Minute)},
				{1000 * time.Hour, allow(1, 2, time.Minute)},
				{1000 * time.Hour, allow(0, 2, 2*time.Minute)},
				{1000 * time.Hour, deny(2, time.Minute, 2*time.Minute)},
			},
		},
		{
			name: "clock going backwards denies, never grants extra",
			rule: Rule{Rate: 10, Period: time.Second, Burst: 2},
			steps: []step{
				{10 * time.Second, allow(1, 2, 100*ms)},
				{10 * time.Second, allow(0, 2, 200*ms)},
				// Five seconds back: the TAT is 10.2 s, so the next
				// request conforms at 10.1 s, 5.1 s from "now".
				{5 * time.Second, deny(2, 5100*ms, 5200*ms)},
				{-time.Hour, deny(2, time.Hour+10100*ms, time.Hour+10200*ms)},
				{10*time.Second + 100*ms, allow(0, 2, 200*ms)},
			},
		},
		{
			name: "interval rounds up: 3 per second never admits a 4th in 1s",
			rule: Rule{Rate: 3, Period: time.Second, Burst: 1},
			steps: []step{
				{0, allow(0, 1, 333333334)},
				{333333334, allow(0, 1, 333333334)},
				{666666668, allow(0, 1, 333333334)},
				{time.Second, deny(1, 2, 2)},
				{time.Second + 2, allow(0, 1, 333333334)},
			},
		},
		{
			name: "month-long period with a large burst does not overflow",
			rule: Rule{Rate: 1_000_000, Period: 30 * 24 * time.Hour, Burst: 1_000_000},
			steps: []step{
				{0, allow(999_999, 1_000_000, 2592*ms)},
				{24 * time.Hour, allow(999_999, 1_000_000, 2592*ms)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			start := clk.Now()
			l := NewLocal(LocalOptions{Now: clk.Now})
			for i, s := range tt.steps {
				clk.Set(start.Add(s.at))
				got, err := l.Allow(context.Background(), "k", tt.rule)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got != s.want {
					t.Fatalf("step %d at %v:\n got %+v\nwant %+v", i, s.at, got, s.want)
				}
			}
		})
	}
}

func TestRuleValidation(t *testing.T) {
	bad := []Rule{
		{Rate: 0, Period: time.Second},
		{Rate: -1, Period: time.Second},
		{Rate: 1, Period: 0},
		{Rate: 1, Period: -time.Second},
		{Rate: 1, Period: time.Second, Burst: -1},
		{Rate: 1, Period: 100 * 365 * 24 * time.Hour, Burst: 1 << 40},
	}
	l := NewLocal(LocalOptions{})
	for _, r := range bad {
		if _, err := l.Allow(context.Background(), "k", r); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("%+v: err = %v, want ErrInvalidRule", r, err)
		}
	}
	if l.Len() != 0 {
		t.Errorf("invalid rules stored %d keys", l.Len())
	}
	// The emission interval is rounded up, not down to zero: a rate above
	// one per nanosecond is still a limit.
	g, err := Rule{Rate: 3, Period: 2}.gcra(time.Nanosecond)
	if err != nil || g.interval != 1 {
		t.Errorf("3 per 2ns: interval %d, err %v; want 1", g.interval, err)
	}
	g, err = Rule{Rate: 3, Period: time.Second}.gcra(time.Microsecond)
	if err != nil || g.interval != 333334 {
		t.Errorf("3/s in µs: interval %d, err %v; want 333334", g.interval, err)
	}
}
