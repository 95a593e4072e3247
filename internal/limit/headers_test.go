package limit

import (
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestHeaders(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name             string
		policy           string
		res              Result
		rule             Rule
		policyHdr, limit string
		retryAfter       string // "" means absent
	}{
		{
			name:      "allowed, per-minute policy",
			policy:    "consumer",
			res:       Result{Allowed: true, Limit: 100, Remaining: 42, ResetAfter: 16200 * ms},
			rule:      Rule{Rate: 100, Period: time.Minute, Burst: 100},
			policyHdr: `"consumer";q=100;w=60`,
			limit:     `"consumer";r=42;t=17`,
		},
		{
			name:       "denied: t and Retry-After agree, rounded up",
			policy:     "ip",
			res:        Result{Limit: 10, RetryAfter: 1200 * ms, ResetAfter: 9 * time.Second},
			rule:       Rule{Rate: 10, Period: time.Second, Burst: 10},
			policyHdr:  `"ip";q=10;w=1`,
			limit:      `"ip";r=0;t=2`,
			retryAfter: "2",
		},
		{
			name:       "denied for a sliver of a second still says 1",
			policy:     "ip",
			res:        Result{Limit: 1, RetryAfter: 1},
			rule:       Rule{Rate: 5, Period: time.Second},
			policyHdr:  `"ip";q=5;w=1`,
			limit:      `"ip";r=0;t=1`,
			retryAfter: "1",
		},
		{
			name:       "denied exactly on a second boundary",
			policy:     "p",
			res:        Result{Limit: 1, RetryAfter: 3 * time.Second},
			rule:       Rule{Rate: 1, Period: 3 * time.Second},
			policyHdr:  `"p";q=1;w=3`,
			limit:      `"p";r=0;t=3`,
			retryAfter: "3",
		},
		{
			name:      "fresh key: nothing to reset",
			policy:    "p",
			res:       Result{Allowed: true, Limit: 5, Remaining: 5},
			rule:      Rule{Rate: 5, Period: time.Hour, Burst: 5},
			policyHdr: `"p";q=5;w=3600`,
			limit:     `"p";r=5;t=0`,
		},
		{
			name:      "sub-second period scales to one second",
			policy:    "p",
			res:       Result{Allowed: true, Limit: 1, ResetAfter: 100 * ms},
			rule:      Rule{Rate: 10, Period: 100 * ms},
			policyHdr: `"p";q=100;w=1`,
			limit:     `"p";r=0;t=1`,
		},
		{
			name:      "fractional period rounds the window up and q down",
			policy:    "p",
			res:       Result{Allowed: true, Limit: 1},
			rule:      Rule{Rate: 3, Period: 1500 * ms},
			policyHdr: `"p";q=4;w=2`,
			limit:     `"p";r=0;t=0`,
		},
		{
			name:      "policy names are escaped sf-strings",
			policy:    "a\"b\\c\nd\u00e9",
			res:       Result{Allowed: true, Limit: 1},
			rule:      Rule{Rate: 1, Period: time.Second},
			policyHdr: `"a\"b\\c_d__";q=1;w=1`,
			limit:     `"a\"b\\c_d__";r=0;t=0`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("Retry-After", "stale")
			if tt.res.Allowed {
				h.Del("Retry-After")
			}
			Headers(h, tt.policy, tt.res, tt.rule)
			if got := h.Get("RateLimit-Policy"); got != tt.policyHdr {
				t.Errorf("RateLimit-Policy = %s, want %s", got, tt.policyHdr)
			}
			if got := h.Get("RateLimit"); got != tt.limit {
				t.Errorf("RateLimit = %s, want %s", got, tt.limit)
			}
			if got := h.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
		})
	}
}

func TestHeadersAll(t *testing.T) {
	checks := []Check{
		{Policy: "consumer", Rule: Rule{Rate: 100, Period: time.Minute, Burst: 100}},
		{Policy: "ip", Rule: Rule{Rate: 10, Period: time.Second, Burst: 10}},
		{Policy: "op", Rule: Rule{Rate: 1, Period: time.Second}},
	}
	results := []Result{
		{Allowed: true, Limit: 100, Remaining: 99, ResetAfter: 600 * time.Millisecond},
		{Limit: 10, RetryAfter: 2500 * time.Millisecond, ResetAfter: 3 * time.Second},
		{Limit: 1, RetryAfter: 400 * time.Millisecond, ResetAfter: 400 * time.Millisecond},
	}
	h := http.Header{}
	HeadersAll(h, checks, results, false)
	if got, want := h.Get("RateLimit-Policy"), `"consumer";q=100;w=60, "ip";q=10;w=1, "op";q=1;w=1`; got != want {
		t.Errorf("RateLimit-Policy = %s\nwant %s", got, want)
	}
	if got, want := h.Get("RateLimit"), `"consumer";r=99;t=1, "ip";r=0;t=3, "op";r=0;t=1`; got != want {
		t.Errorf("RateLimit = %s\nwant %s", got, want)
	}
	if got := h.Get("Retry-After"); got != "3" {
		t.Errorf("Retry-After = %q, want the longest wait, 3", got)
	}
	h = http.Header{}
	results[1], results[2] = Result{Allowed: true, Limit: 10, Remaining: 3}, Result{Allowed: true, Limit: 1}
	HeadersAll(h, checks, results, true)
	if h.Get("Retry-After") != "" {
		t.Error("Retry-After on an admitted request")
	}
}

// TestHeadersFromLimiter: the headers a real decision produces.
func TestHeadersFromLimiter(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(LocalOptions{Now: clk.Now})
	rule := Rule{Rate: 2, Period: time.Second, Burst: 2} // T = 500 ms
	h := http.Header{}
	for range 2 {
		res, _ := l.Allow(ctx, "k", rule)
		Headers(h, "default", res, rule)
	}
	if got := h.Get("RateLimit"); got != `"default";r=0;t=1` {
		t.Errorf("after the burst: RateLimit = %s", got)
	}
	res, _ := l.Allow(ctx, "k", rule)
	Headers(h, "default", res, rule)
	if h.Get("Retry-After") != "1" || h.Get("RateLimit") != `"default";r=0;t=1` {
		t.Errorf("denied: Retry-After %q RateLimit %s", h.Get("Retry-After"), h.Get("RateLimit"))
	}
}

func TestClientIPKey(t *testing.T) {
	tests := []struct {
		ip         string
		v4, v6     int
		want       string
		wantSameAs string // another address that must share the key
	}{
		{ip: "203.0.113.7", want: "ip:203.0.113.7/32"},
		{ip: "203.0.113.7", v4: 24, want: "ip:203.0.113.0/24", wantSameAs: "203.0.113.250"},
		{ip: "::ffff:203.0.113.7", want: "ip:203.0.113.7/32", wantSameAs: "203.0.113.7"},
		{ip: "2001:db8:1:2:3:4:5:6", want: "ip:2001:db8:1:2::/64", wantSameAs: "2001:db8:1:2:ffff:ffff:ffff:ffff"},
		{ip: "2001:db8:1:2:3:4:5:6", v6: 48, want: "ip:2001:db8:1::/48", wantSameAs: "2001:db8:1:ff::1"},
		{ip: "2001:db8:1:2:3:4:5:6", v6: 128, want: "ip:2001:db8:1:2:3:4:5:6/128"},
		{ip: "fe80::1%eth0", want: "ip:fe80::/64", wantSameAs: "fe80::2"},
		{ip: "203.0.113.7", v4: 33, v6: 129, want: "ip:203.0.113.7/32"}, // out of range: defaults
		{ip: "2001:db8::1", v4: 8, v6: -1, want: "ip:2001:db8::/64"},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		got := ClientIPKey(ip, tt.v4, tt.v6)
		if got != tt.want {
			t.Errorf("ClientIPKey(%s, %d, %d) = %q, want %q", tt.ip, tt.v4, tt.v6, got, tt.want)
		}
		if tt.wantSameAs != "" {
			if other := ClientIPKey(netip.MustParseAddr(tt.wantSameAs), tt.v4, tt.v6); other != got {
				t.Errorf("%s and %s must share a key: %q vs %q", tt.ip, tt.wantSameAs, got, other)
			}
		}
	}
	// A client's /64 neighbour is the same client; the next /64 is not.
	if ClientIPKey(netip.MustParseAddr("2001:db8:0:1::1"), 0, 0) == ClientIPKey(netip.MustParseAddr("2001:db8:0:2::1"), 0, 0) {
		t.Error("distinct /64s share a key")
	}
	if got := ClientIPKey(netip.Addr{}, 0, 0); got != InvalidIPKey {
		t.Errorf("zero address: %q, want %q", got, InvalidIPKey)
	}
	v6 := netip.MustParseAddr("2001:db8:1:2:3:4:5:6")
	if n := testing.AllocsPerRun(100, func() { ClientIPKey(v6, 0, 0) }); n > 1 {
		t.Errorf("ClientIPKey allocates %v times, want at most 1 (the string)", n)
	}
}

// TestPolicyValueAndAppendStateMatchHeadersAll: the split helpers write
// exactly what HeadersAll writes.
func TestPolicyValueAndAppendStateMatchHeadersAll(t *testing.T) {
	checks := []Check{
		{Policy: "a", Rule: Rule{Rate: 10, Period: time.Second, Burst: 5}},
		{Policy: "b\"x", Rule: Rule{Rate: 3, Period: time.Minute}},
	}
	for _, allowed := range []bool{true, false} {
		results := []Result{
			{Allowed: true, Remaining: 4, ResetAfter: 100 * time.Millisecond},
			{Allowed: allowed, Remaining: 0, RetryAfter: 2500 * time.Millisecond, ResetAfter: time.Minute},
		}
		h := http.Header{}
		HeadersAll(h, checks, results, allowed)
		state, wait := AppendState(nil, checks, results, allowed)
		if got := PolicyValue(checks); got != h.Get(HeaderRateLimitPolicy) {
			t.Errorf("PolicyValue %q, HeadersAll %q", got, h.Get(HeaderRateLimitPolicy))
		}
		if string(state) != h.Get(HeaderRateLimit) {
			t.Errorf("AppendState %q, HeadersAll %q", state, h.Get(HeaderRateLimit))
		}
		if ra := h.Get(HeaderRetryAfter); (ra == "") != (wait == 0) || (wait != 0 && ra != strconv.FormatInt(wait, 10)) {
			t.Errorf("allowed=%v: Retry-After %q, AppendState wait %d", allowed, ra, wait)
		}
	}
}
