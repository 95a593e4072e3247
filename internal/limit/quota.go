package limit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// QuotaPeriod is the calendar unit of a quota window.
type QuotaPeriod int

const (
	// QuotaDay windows run from local midnight to the next local midnight
	// (23 or 25 hours on DST change days).
	QuotaDay QuotaPeriod = iota
	// QuotaMonth windows run from the first of the month, local midnight,
	// to the first of the next.
	QuotaMonth
)

// ParseQuotaPeriod reads the config spelling: "day" or "month".
func ParseQuotaPeriod(s string) (QuotaPeriod, error) {
	switch s {
	case "day":
		return QuotaDay, nil
	case "month":
		return QuotaMonth, nil
	}
	return 0, fmt.Errorf("limit: unknown quota period %q: want day or month", s)
}

func (p QuotaPeriod) String() string {
	switch p {
	case QuotaDay:
		return "day"
	case QuotaMonth:
		return "month"
	}
	return fmt.Sprintf("QuotaPeriod(%d)", int(p))
}

// QuotaWindow is a calendar-aligned window in a time zone: partners' quotas
// reset at their midnight, not at UTC's or at a rolling 24 hours.
type QuotaWindow struct {
	Per QuotaPeriod
	// Location is the time zone of the calendar (nil means UTC).
	Location *time.Location
}

// Bounds returns the window containing now: start ≤ now < end. start is the
// first instant of the local day (or month), also where local midnight does
// not exist because a DST change skips it.
func (w QuotaWindow) Bounds(now time.Time) (start, end time.Time) {
	loc := w.Location
	if loc == nil {
		loc = time.UTC
	}
	y, m, d := now.In(loc).Date()
	if w.Per == QuotaMonth {
		return startOfDay(y, m, 1, loc), startOfDay(y, m+1, 1, loc)
	}
	return startOfDay(y, m, d, loc), startOfDay(y, m, d+1, loc)
}

// startOfDay is the first instant whose local date in loc is y-m-d (which
// may be out of range, e.g. month 13: it is normalised like time.Date).
func startOfDay(y int, m time.Month, d int, loc *time.Location) time.Time {
	y, m, d = time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Date()
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	// Where a DST change skips or repeats midnight (America/Santiago,
	// Asia/Beirut, ...), time.Date may answer with an instant that is
	// still the previous local day; the day then begins at the next local
	// midnight of that day, which is the transition.
	for range 3 {
		ty, tm, td := t.Date()
		if ty > y || (ty == y && (tm > m || (tm == m && td >= d))) {
			break
		}
		h, mi, s := t.Clock()
		t = t.Add(24*time.Hour - time.Duration(h)*time.Hour - time.Duration(mi)*time.Minute -
			time.Duration(s)*time.Second - time.Duration(t.Nanosecond()))
	}
	return t
}

// Quota is a number of requests per calendar window.
type Quota struct {
	Limit  int64
	Window QuotaWindow
}

// QuotaUsage is a quota's state for one key, as the admin API shows it.
type QuotaUsage struct {
	// Allowed says whether Take granted the units (for Usage: whether one
	// more unit would be granted).
	Allowed  bool      `json:"allowed"`
	Used     int64     `json:"used"`
	Limit    int64     `json:"limit"`
	ResetsAt time.Time `json:"resets_at"`
}

// Remaining is what is left in the current window.
func (u QuotaUsage) Remaining() int64 { return max(u.Limit-u.Used, 0) }

// QuotaCounter counts quota use per key and window. Implementations: the
// RedisQuota (cluster), LocalQuota (in process, not persistent), and a
// store-backed one for single-node persistence, which needs the same two
// operations (e.g. an UPDATE ... SET used = used + n WHERE key = ? AND
// window_start = ? AND used + n <= limit, inserting the row when absent).
type QuotaCounter interface {
	// Take consumes n units of key's quota in the window containing now,
	// all or nothing: if they do not fit, nothing is consumed and
	// Allowed is false. Denied requests therefore do not count as used.
	Take(ctx context.Context, key string, q Quota, n int64) (QuotaUsage, error)
	// Usage reports key's use of the current window without consuming.
	Usage(ctx context.Context, key string, q Quota) (QuotaUsage, error)
}

// ErrInvalidQuota means a Quota or a Take amount cannot be enforced.
var ErrInvalidQuota = errors.New("limit: invalid quota")

func checkQuota(q Quota, n int64) error {
	if q.Limit < 0 || n < 1 || (q.Window.Per != QuotaDay && q.Window.Per != QuotaMonth) {
		return fmt.Errorf("%w: limit %d per %v, take %d: want limit >= 0, take >= 1, per day or month",
			ErrInvalidQuota, q.Limit, q.Window.Per, n)
	}
	return nil
}

// LocalQuota counts in process memory: exact, but lost on restart (single
// node persistence belongs to a store-backed QuotaCounter). Memory holds
// one entry per key, and keys are consumers and partners, which the config
// bounds.
type LocalQuota struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]localQuota
}

type localQuota struct {
	start time.Time
	used  int64
}

var _ QuotaCounter = (*LocalQuota)(nil)

// NewLocalQuota returns an empty counter; now is the clock (nil: time.Now).
func NewLocalQuota(now func() time.Time) *LocalQuota {
	if now == nil {
		now = time.Now
	}
	return &LocalQuota{now: now, m: make(map[string]localQuota)}
}

// Take implements QuotaCounter.
func (c *LocalQuota) Take(_ context.Context, key string, q Quota, n int64) (QuotaUsage, error) {
	if err := checkQuota(q, n); err != nil {
		return QuotaUsage{}, err
	}
	start, end := q.Window.Bounds(c.now())
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if !e.start.Equal(start) {
		e = localQuota{start: start}
	}
	u := QuotaUsage{Limit: q.Limit, ResetsAt: end}
	if e.used+n <= q.Limit {
		e.used += n
		c.m[key] = e
		u.Allowed = true
	}
	u.Used = e.used
	return u, nil
}

// Usage implements QuotaCounter.
func (c *LocalQuota) Usage(_ context.Context, key string, q Quota) (QuotaUsage, error) {
	if err := checkQuota(q, 1); err != nil {
		return QuotaUsage{}, err
	}
	start, end := q.Window.Bounds(c.now())
	c.mu.Lock()
	e := c.m[key]
	c.mu.Unlock()
	used := int64(0)
	if e.start.Equal(start) {
		used = e.used
	}
	return QuotaUsage{Allowed: used < q.Limit, Used: used, Limit: q.Limit, ResetsAt: end}, nil
}
