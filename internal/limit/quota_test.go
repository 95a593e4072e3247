package limit

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata" // the tables below must not depend on the machine's zoneinfo
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestQuotaWindowBounds(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	santiago := mustLoc(t, "America/Santiago")
	havana := mustLoc(t, "America/Havana")
	at := func(loc *time.Location, y int, m time.Month, d, h, mi int) time.Time {
		return time.Date(y, m, d, h, mi, 0, 0, loc)
	}
	tests := []struct {
		name       string
		w          QuotaWindow
		now        time.Time
		start, end time.Time
		length     time.Duration
	}{
		{
			name:  "Berlin ordinary day",
			w:     QuotaWindow{Per: QuotaDay, Location: berlin},
			now:   at(berlin, 2025, 6, 15, 13, 30),
			start: at(berlin, 2025, 6, 15, 0, 0), end: at(berlin, 2025, 6, 16, 0, 0),
			length: 24 * time.Hour,
		},
		{
			name:  "Berlin spring forward: 23-hour day",
			w:     QuotaWindow{Per: QuotaDay, Location: berlin},
			now:   at(berlin, 2025, 3, 30, 4, 0), // after the 02:00→03:00 jump
			start: at(berlin, 2025, 3, 30, 0, 0), end: at(berlin, 2025, 3, 31, 0, 0),
			length: 23 * time.Hour,
		},
		{
			name:  "Berlin fall back: 25-hour day",
			w:     QuotaWindow{Per: QuotaDay, Location: berlin},
			now:   time.Date(2025, 10, 26, 1, 30, 0, 0, time.UTC), // 02:30 CET, the second 02:30
			start: at(berlin, 2025, 10, 26, 0, 0), end: at(berlin, 2025, 10, 27, 0, 0),
			length: 25 * time.Hour,
		},
		{
			name:  "Berlin day boundary is local midnight, not UTC's",
			w:     QuotaWindow{Per: QuotaDay, Location: berlin},
			now:   time.Date(2025, 6, 15, 22, 30, 0, 0, time.UTC), // 00:30 on the 16th in Berlin
			start: at(berlin, 2025, 6, 16, 0, 0), end: at(berlin, 2025, 6, 17, 0, 0),
			length: 24 * time.Hour,
		},
		{
			name:  "last nanosecond belongs to the day",
			w:     QuotaWindow{Per: QuotaDay, Location: berlin},
			now:   at(berlin, 2025, 6, 16, 0, 0).Add(-1),
			start: at(berlin, 2025, 6, 15, 0, 0), end: at(berlin, 2025, 6, 16, 0, 0),
			length: 24 * time.Hour,
		},
		{
			name:  "Feb 29 is a day of its own",
			w:     QuotaWindow{Per: QuotaDay, Location: berlin},
			now:   at(berlin, 2024, 2, 29, 12, 0),
			start: at(berlin, 2024, 2, 29, 0, 0), end: at(berlin, 2024, 3, 1, 0, 0),
			length: 24 * time.Hour,
		},
		{
			name:  "leap February month",
			w:     QuotaWindow{Per: QuotaMonth, Location: berlin},
			now:   at(berlin, 2024, 2, 29, 23, 59),
			start: at(berlin, 2024, 2, 1, 0, 0), end: at(berlin, 2024, 3, 1, 0, 0),
			length: 29 * 24 * time.Hour,
		},
		{
			name:  "common February month",
			w:     QuotaWindow{Per: QuotaMonth, Location: berlin},
			now:   at(berlin, 2025, 2, 10, 0, 0),
			start: at(berlin, 2025, 2, 1, 0, 0), end: at(berlin, 2025, 3, 1, 0, 0),
			length: 28 * 24 * time.Hour,
		},
		{
			name:  "December day rolls into January",
			w:     QuotaWindow{Per: QuotaDay, Location: berlin},
			now:   at(berlin, 2025, 12, 31, 23, 0),
			start: at(berlin, 2025, 12, 31, 0, 0), end: at(berlin, 2026, 1, 1, 0, 0),
			length: 24 * time.Hour,
		},
		{
			name:  "December month rolls into the next year",
			w:     QuotaWindow{Per: QuotaMonth, Location: berlin},
			now:   at(berlin, 2025, 12, 31, 23, 59),
			start: at(berlin, 2025, 12, 1, 0, 0), end: at(berlin, 2026, 1, 1, 0, 0),
			length: 31 * 24 * time.Hour,
		},
		{
			name:  "March month in Berlin loses the DST hour",
			w:     QuotaWindow{Per: QuotaMonth, Location: berlin},
			now:   at(berlin, 2025, 3, 15, 0, 0),
			start: at(berlin, 2025, 3, 1, 0, 0), end: at(berlin, 2025, 4, 1, 0, 0),
			length: 31*24*time.Hour - time.Hour,
		},
		{
			name:  "October month in Berlin gains it",
			w:     QuotaWindow{Per: QuotaMonth, Location: berlin},
			now:   at(berlin, 2025, 10, 31, 23, 0),
			start: at(berlin, 2025, 10, 1, 0, 0), end: at(berlin, 2025, 11, 1, 0, 0),
			length: 31*24*time.Hour + time.Hour,
		},
		{
			name: "Santiago: midnight skipped by DST, the day starts at 01:00",
			w:    QuotaWindow{Per: QuotaDay, Location: santiago},
			now:  time.Date(2024, 9, 8, 12, 0, 0, 0, time.UTC),
			// 2024-09-08 00:00 -04 does not exist: clocks jump to 01:00 -03.
			start:  time.Date(2024, 9, 8, 4, 0, 0, 0, time.UTC),
			end:    time.Date(2024, 9, 9, 3, 0, 0, 0, time.UTC),
			length: 23 * time.Hour,
		},
		{
			name:   "Santiago: the day before a skipped midnight ends at the jump",
			w:      QuotaWindow{Per: QuotaDay, Location: santiago},
			now:    time.Date(2024, 9, 8, 3, 30, 0, 0, time.UTC), // 23:30 -04 on the 7th
			start:  time.Date(2024, 9, 7, 4, 0, 0, 0, time.UTC),
			end:    time.Date(2024, 9, 8, 4, 0, 0, 0, time.UTC),
			length: 24 * time.Hour,
		},
		{
			name:   "Havana: month that starts on time, in a DST-at-midnight zone",
			w:      QuotaWindow{Per: QuotaMonth, Location: havana},
			now:    time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC),
			start:  time.Date(2024, 3, 1, 5, 0, 0, 0, time.UTC),
			end:    time.Date(2024, 4, 1, 4, 0, 0, 0, time.UTC),
			length: 31*24*time.Hour - time.Hour,
		},
		{
			name:  "nil location is UTC",
			w:     QuotaWindow{Per: QuotaDay},
			now:   time.Date(2025, 6, 15, 23, 59, 59, 0, berlin),
			start: time.Date(2025, 6, 15, 0, 0, 0, 0, time.UTC), end: time.Date(2025, 6, 16, 0, 0, 0, 0, time.UTC),
			length: 24 * time.Hour,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := tt.w.Bounds(tt.now)
			if !start.Equal(tt.start) || !end.Equal(tt.end) {
				t.Fatalf("Bounds(%v) = [%v, %v), want [%v, %v)", tt.now, start, end, tt.start, tt.end)
			}
			if got := end.Sub(start); got != tt.length {
				t.Fatalf("window length %v, want %v", got, tt.length)
			}
			if tt.now.Before(start) || !tt.now.Before(end) {
				t.Fatalf("now %v outside [%v, %v)", tt.now, start, end)
			}
		})
	}
}

// TestQuotaWindowContiguous: over two years of Berlin and Santiago days
// and months, each window ends where the next begins and contains its
// instants.
func TestQuotaWindowContiguous(t *testing.T) {
	for _, name := range []string{"Europe/Berlin", "America/Santiago", "America/Havana", "Asia/Beirut"} {
		loc := mustLoc(t, name)
		for _, per := range []QuotaPeriod{QuotaDay, QuotaMonth} {
			w := QuotaWindow{Per: per, Location: loc}
			now := time.Date(2024, 1, 1, 12, 0, 0, 0, loc)
			_, end := w.Bounds(now)
			for i := 0; now.Year() < 2026 && i < 1000; i++ {
				s, e := w.Bounds(end)
				if !s.Equal(end) {
					t.Fatalf("%s %v: window after %v starts at %v", name, per, end, s)
				}
				if l := e.Sub(s); l < 23*time.Hour || l > 31*24*time.Hour+time.Hour {
					t.Fatalf("%s %v: window [%v, %v) of %v", name, per, s, e, l)
				}
				if s2, _ := w.Bounds(e.Add(-1)); !s2.Equal(s) {
					t.Fatalf("%s %v: last instant of [%v, %v) falls in a window from %v", name, per, s, e, s2)
				}
				now, end = e, e
			}
		}
	}
}

func TestParseQuotaPeriod(t *testing.T) {
	for in, want := range map[string]QuotaPeriod{"day": QuotaDay, "month": QuotaMonth} {
		if got, err := ParseQuotaPeriod(in); err != nil || got != want {
			t.Errorf("ParseQuotaPeriod(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseQuotaPeriod("week"); err == nil {
		t.Error("week accepted")
	}
}

// testQuotaCounter runs the same contract against any QuotaCounter whose
// clock is clk.
func testQuotaCounter(t *testing.T, c QuotaCounter, clk *fakeClock) {
	t.Helper()
	berlin := mustLoc(t, "Europe/Berlin")
	q := Quota{Limit: 5, Window: QuotaWindow{Per: QuotaDay, Location: berlin}}
	clk.Set(time.Date(2025, 3, 29, 23, 30, 0, 0, berlin))
	wantReset := time.Date(2025, 3, 30, 0, 0, 0, 0, berlin)

	u, err := c.Take(ctx, "partner:acme", q, 3)
	if err != nil || !u.Allowed || u.Used != 3 || u.Limit != 5 || !u.ResetsAt.Equal(wantReset) {
		t.Fatalf("take 3: %+v %v", u, err)
	}
	u, _ = c.Take(ctx, "partner:acme", q, 3) // 6 > 5: all or nothing
	if u.Allowed || u.Used != 3 {
		t.Fatalf("take 3 more: %+v, want denied with used still 3", u)
	}
	u, _ = c.Take(ctx, "partner:acme", q, 2)
	if !u.Allowed || u.Used != 5 || u.Remaining() != 0 {
		t.Fatalf("take 2: %+v, want allowed, used 5", u)
	}
	for range 3 {
		if u, _ = c.Take(ctx, "partner:acme", q, 1); u.Allowed || u.Used != 5 {
			t.Fatalf("over quota: %+v, want denied and not counted", u)
		}
	}
	u, err = c.Usage(ctx, "partner:acme", q)
	if err != nil || u.Used != 5 || u.Allowed || !u.ResetsAt.Equal(wantReset) {
		t.Fatalf("usage: %+v %v", u, err)
	}
	if u, _ = c.Usage(ctx, "partner:other", q); u.Used != 0 || !u.Allowed {
		t.Fatalf("other key: %+v, want unused", u)
	}

	// Local midnight (a 23-hour DST day follows): a fresh window.
	clk.Set(wantReset)
	u, _ = c.Usage(ctx, "partner:acme", q)
	if u.Used != 0 || !u.ResetsAt.Equal(time.Date(2025, 3, 31, 0, 0, 0, 0, berlin)) {
		t.Fatalf("next day usage: %+v", u)
	}
	if u, _ = c.Take(ctx, "partner:acme", q, 1); !u.Allowed || u.Used != 1 {
		t.Fatalf("next day take: %+v", u)
	}

	for _, bad := range []struct {
		q Quota
		n int64
	}{{q, 0}, {q, -1}, {Quota{Limit: -1, Window: q.Window}, 1}, {Quota{Limit: 1, Window: QuotaWindow{Per: 7}}, 1}} {
		if _, err := c.Take(ctx, "k", bad.q, bad.n); !errors.Is(err, ErrInvalidQuota) {
			t.Errorf("Take(%+v, %d): %v, want ErrInvalidQuota", bad.q, bad.n, err)
		}
	}
}

// testQuotaConcurrent: racing takes grant exactly the limit.
func testQuotaConcurrent(t *testing.T, c QuotaCounter) {
	t.Helper()
	q := Quota{Limit: 123, Window: QuotaWindow{Per: QuotaMonth}}
	var granted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				u, err := c.Take(ctx, "consumer:race", q, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if u.Allowed {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if granted.Load() != 123 {
		t.Fatalf("granted %d of 200, want exactly 123", granted.Load())
	}
	if u, _ := c.Usage(ctx, "consumer:race", q); u.Used != 123 {
		t.Fatalf("used %d, want 123", u.Used)
	}
}

func TestLocalQuota(t *testing.T) {
	clk := newFakeClock()
	testQuotaCounter(t, NewLocalQuota(clk.Now), clk)
	testQuotaConcurrent(t, NewLocalQuota(clk.Now))
}

func newTestRedisQuota(t *testing.T, prefix string, clk *fakeClock) *RedisQuota {
	t.Helper()
	o := RedisQuotaOptions{}
	if clk != nil {
		o.Now = clk.Now
	}
	o.Timeout = testTimeout
	c, err := NewRedisQuota(newRedisClient(t, "", testTimeout), prefix, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRedisQuota(t *testing.T) {
	prefix := testPrefix(t)
	clk := newFakeClock()
	testQuotaCounter(t, newTestRedisQuota(t, prefix, clk), clk)
	testQuotaConcurrent(t, newTestRedisQuota(t, testPrefix(t), nil))
}

// TestRedisQuotaPersistsAndExpires: a new counter (a restarted gateway)
// sees the same use; the window's key expires at the window end plus the
// grace.
func TestRedisQuotaPersistsAndExpires(t *testing.T) {
	prefix := testPrefix(t)
	q := Quota{Limit: 1000, Window: QuotaWindow{Per: QuotaDay, Location: mustLoc(t, "Europe/Berlin")}}
	first := newTestRedisQuota(t, prefix, nil)
	for range 7 {
		if _, err := first.Take(ctx, "partner:acme", q, 1); err != nil {
			t.Fatal(err)
		}
	}
	restarted := newTestRedisQuota(t, prefix, nil)
	u, err := restarted.Usage(ctx, "partner:acme", q)
	if err != nil || u.Used != 7 {
		t.Fatalf("after restart: %+v %v, want used 7", u, err)
	}
	start, end := q.Window.Bounds(time.Now())
	key := restarted.WindowKey("partner:acme", start)
	ttl, err := newRedisClient(t, "", testTimeout).PTTL(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Until(end.Add(DefaultQuotaGrace))
	if d := ttl - want; d > 5*time.Second || d < -5*time.Second {
		t.Fatalf("key %s TTL %v, want about %v (window end + grace)", key, ttl, want)
	}
}
