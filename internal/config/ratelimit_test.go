package config

import (
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	cases := []struct {
		in     string
		n      int
		period time.Duration
		ok     bool
	}{
		{"100/s", 100, time.Second, true},
		{"1000/m", 1000, time.Minute, true},
		{"5/h", 5, time.Hour, true},
		{"10000/d", 10000, 24 * time.Hour, true},
		{"5/10s", 5, 10 * time.Second, true},
		{"3/7d", 3, 7 * 24 * time.Hour, true},
		{"1/250ms", 1, 250 * time.Millisecond, true},
		// Refused: every one of these would be a limit nobody meant.
		{"0/s", 0, 0, false},
		{"-1/s", 0, 0, false},
		{"100", 0, 0, false},
		{"100/", 0, 0, false},
		{"/s", 0, 0, false},
		{"100/x", 0, 0, false},
		{"1/0s", 0, 0, false},
		{"1/1ns", 0, 0, false},
		{"1/400d", 0, 0, false},
		{"1000000001/s", 0, 0, false},
		{"1e3/s", 0, 0, false},
	}
	for _, tc := range cases {
		n, p, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (n != tc.n || p != tc.period)) {
			t.Errorf("ParseRate(%q) = %d, %s, %v; want %d, %s, ok=%v", tc.in, n, p, err, tc.n, tc.period, tc.ok)
		}
	}
}

// FuzzParseRate: any accepted rate is in range, so the limiter never sees
// a rule it must refuse at run time.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100/s", "5/10s", "3/7d", "1/250ms", "x", "1/", "9999999999/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, p, err := ParseRate(s)
		if err != nil {
			return
		}
		if n < 1 || n > 1_000_000_000 || p < time.Millisecond || p > 366*24*time.Hour {
			t.Fatalf("ParseRate(%q) = %d, %s: out of range", s, n, p)
		}
	})
}
