package storetest

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

var quotaTests = []test{
	{"take until full", testQuotaTakeUntilFull},
	{"all or nothing", testQuotaAllOrNothing},
	{"windows are separate", testQuotaWindows},
	{"rejects", testQuotaRejects},
	{"concurrent exact", testQuotaConcurrent},
}

var day1 = time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)

func take(key string, start time.Time, limit, n int64) store.QuotaTake {
	return store.QuotaTake{Key: key, WindowStart: start, Limit: limit, N: n}
}

func testQuotaTakeUntilFull(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	u, err := s.QuotaUsed(ctx, "consumer:a", day1)
	mustNoErr(t, err, "used of an absent counter")
	if u != 0 {
		t.Fatalf("absent counter used = %d, want 0", u)
	}
	for i := 1; i <= 3; i++ {
		ok, used, err := s.TakeQuota(ctx, []store.QuotaTake{take("consumer:a", day1, 3, 1)})
		mustNoErr(t, err, "take")
		if !ok || !slices.Equal(used, []int64{int64(i)}) {
			t.Fatalf("take %d: ok=%v used=%v, want true [%d]", i, ok, used, i)
		}
	}
	ok, used, err := s.TakeQuota(ctx, []store.QuotaTake{take("consumer:a", day1, 3, 1)})
	mustNoErr(t, err, "take past the limit")
	if ok || !slices.Equal(used, []int64{3}) {
		t.Fatalf("take past the limit: ok=%v used=%v, want false [3]", ok, used)
	}
	// A bigger take than what is left is refused whole; a fitting one passes.
	ok, _, err = s.TakeQuota(ctx, []store.QuotaTake{take("consumer:b", day1, 5, 6)})
	mustNoErr(t, err, "oversized take")
	if ok {
		t.Fatal("a take larger than the limit passed")
	}
	ok, used, err = s.TakeQuota(ctx, []store.QuotaTake{take("consumer:b", day1, 5, 5)})
	mustNoErr(t, err, "exact take")
	if !ok || used[0] != 5 {
		t.Fatalf("exact take: ok=%v used=%v, want true [5]", ok, used)
	}
	u, err = s.QuotaUsed(ctx, "consumer:a", day1)
	mustNoErr(t, err, "used")
	if u != 3 {
		t.Fatalf("used = %d, want 3", u)
	}
}

func testQuotaAllOrNothing(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	// The partner counter is full: the consumer's must not move.
	ok, _, err := s.TakeQuota(ctx, []store.QuotaTake{take("partner:p", day1, 1, 1)})
	mustNoErr(t, err, "fill partner")
	if !ok {
		t.Fatal("first partner take refused")
	}
	for _, order := range [][]store.QuotaTake{
		{take("consumer:c", day1, 10, 1), take("partner:p", day1, 1, 1)},
		{take("partner:p", day1, 1, 1), take("consumer:c", day1, 10, 1)},
	} {
		ok, used, err := s.TakeQuota(ctx, order)
		mustNoErr(t, err, "take both")
		if ok {
			t.Fatal("take passed although one counter is full")
		}
		for i, tk := range order {
			want := map[string]int64{"consumer:c": 0, "partner:p": 1}[tk.Key]
			if used[i] != want {
				t.Fatalf("used[%d] (%s) = %d, want %d", i, tk.Key, used[i], want)
			}
		}
	}
	u, err := s.QuotaUsed(ctx, "consumer:c", day1)
	mustNoErr(t, err, "used")
	if u != 0 {
		t.Fatalf("refused call consumed the consumer counter: used = %d", u)
	}
}

func testQuotaWindows(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	day2 := day1.AddDate(0, 0, 1)
	for _, start := range []time.Time{day1, day2} {
		ok, used, err := s.TakeQuota(ctx, []store.QuotaTake{take("consumer:w", start, 1, 1)})
		mustNoErr(t, err, "take")
		if !ok || used[0] != 1 {
			t.Fatalf("window %s: ok=%v used=%v, want a fresh counter", start, ok, used)
		}
	}
}

func testQuotaRejects(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for name, takes := range map[string][]store.QuotaTake{
		"empty key":  {take("", day1, 1, 1)},
		"zero n":     {take("k", day1, 1, 0)},
		"negative":   {take("k", day1, -1, 1)},
		"duplicated": {take("k", day1, 5, 1), take("k", day1, 5, 1)},
	} {
		if _, _, err := s.TakeQuota(ctx, takes); !errors.Is(err, store.ErrInvalidQuotaTake) {
			t.Errorf("%s: err = %v, want ErrInvalidQuotaTake", name, err)
		}
	}
	// A zero limit is valid and refuses everything.
	ok, _, err := s.TakeQuota(ctx, []store.QuotaTake{take("k", day1, 0, 1)})
	mustNoErr(t, err, "zero limit")
	if ok {
		t.Fatal("zero limit admitted a take")
	}
}

func testQuotaConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const limit, perWorker = 50, 20 // 8 workers × 20 = 160 attempts for 50 units
	var admitted atomic.Int64
	parallel(t, func(int) error {
		for range perWorker {
			ok, _, err := s.TakeQuota(ctx, []store.QuotaTake{take("partner:race", day1, limit, 1), take("consumer:race", day1, 1000, 1)})
			if err != nil {
				return err
			}
			if ok {
				admitted.Add(1)
			}
		}
		return nil
	})
	if admitted.Load() != limit {
		t.Fatalf("admitted %d, want exactly %d", admitted.Load(), limit)
	}
	for key, want := range map[string]int64{"partner:race": limit, "consumer:race": limit} {
		u, err := s.QuotaUsed(ctx, key, day1)
		mustNoErr(t, err, "used")
		if u != want {
			t.Fatalf("%s used = %d, want %d", key, u, want)
		}
	}
}

// BenchmarkTakeQuota is the store's cost per quota-limited request: one
// all-or-nothing take of a consumer and a partner counter, from parallel
// callers as the gateway makes them.
func BenchmarkTakeQuota(b *testing.B, s store.Store) {
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		takes := []store.QuotaTake{take("consumer:bench", day1, 1<<40, 1), take("partner:bench", day1, 1<<40, 1)}
		for pb.Next() {
			ok, _, err := s.TakeQuota(ctx, takes)
			if err != nil || !ok {
				b.Fatalf("take: %v %v", ok, err)
			}
		}
	})
}
