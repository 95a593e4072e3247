package limit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/gatehouse/gatehouse/internal/limit"
)

// Two limits on one request: per consumer and per client IP. The request
// passes only if both do; the 429 carries the headers of both policies.
func ExampleAllowAll() {
	lim := limit.NewLocal(limit.LocalOptions{})
	ip := netip.MustParseAddr("2001:db8:1:2::77")
	checks := []limit.Check{
		{Policy: "consumer", Key: "consumer:acme-billing", Rule: limit.Rule{Rate: 100, Period: time.Minute, Burst: 50}},
		{Policy: "ip", Key: limit.ClientIPKey(ip, 0, 0), Rule: limit.Rule{Rate: 2, Period: time.Minute, Burst: 2}},
	}
	for i := range 3 {
		v, err := limit.AllowAll(context.Background(), lim, checks)
		if err != nil {
			panic(err)
		}
		h := http.Header{}
		limit.HeadersAll(h, checks, v.Results, v.Allowed)
		fmt.Printf("%d allowed=%v binding=%s RateLimit: %s; Retry-After: %q\n",
			i, v.Allowed, checks[v.Binding].Policy, h.Get("RateLimit"), h.Get("Retry-After"))
	}
	// Output:
	// 0 allowed=true binding=ip RateLimit: "consumer";r=49;t=1, "ip";r=1;t=30; Retry-After: ""
	// 1 allowed=true binding=ip RateLimit: "consumer";r=48;t=2, "ip";r=0;t=60; Retry-After: ""
	// 2 allowed=false binding=ip RateLimit: "consumer";r=48;t=2, "ip";r=0;t=30; Retry-After: "30"
}

func ExampleQuotaWindow_Bounds() {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	w := limit.QuotaWindow{Per: limit.QuotaDay, Location: berlin}
	start, end := w.Bounds(time.Date(2025, 3, 30, 12, 0, 0, 0, berlin))
	fmt.Println(start, "→", end, end.Sub(start))
	// Output: 2025-03-30 00:00:00 +0100 CET → 2025-03-31 00:00:00 +0200 CEST 23h0m0s
}
