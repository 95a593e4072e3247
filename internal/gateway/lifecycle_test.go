package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
)

// TestLifecycleHeaderFormats checks the header values against the RFCs'
// own examples.
func TestLifecycleHeaderFormats(t *testing.T) {
	cfg := &config.Config{APIs: []config.API{
		{Name: "orders", Version: "v1", Lifecycle: "deprecated", Deprecation: config.Deprecation{
			On: "2023-06-30T23:59:59Z", Sunset: "2018-12-31T23:59:59Z", Successor: "v2", Link: "https://developer.example.com/deprecation"}},
		{Name: "orders", Version: "v2", Lifecycle: "active", Route: config.APIRoute{BasePath: "/orders/v2"}},
		{Name: "billing", Version: "v2", Lifecycle: "active", Route: config.APIRoute{Host: "api.example.com", BasePath: "/billing/v2"}},
	}}
	lc := newLifecycle(cfg, cfg.APIs[0])
	h := http.Header{}
	lc.announce(h)
	// RFC 9745 §2.1: "Deprecation: @1688169599".
	if got := h.Get("Deprecation"); got != "@1688169599" {
		t.Errorf("Deprecation = %q, want @1688169599", got)
	}
	// RFC 8594 §3 writes "Sat, 31 Dec 2018 23:59:59 GMT", but that day was
	// a Monday (a known erratum); the IMF-fixdate must carry the real one.
	if got := h.Get("Sunset"); got != "Mon, 31 Dec 2018 23:59:59 GMT" {
		t.Errorf("Sunset = %q", got)
	}
	if ts, err := http.ParseTime(h.Get("Sunset")); err != nil || ts.Unix() != 1546300799 {
		t.Errorf("Sunset does not parse back: %v %v", ts, err)
	}
	want := `</orders/v2>; rel="successor-version", <https://developer.example.com/deprecation>; rel="deprecation"; type="text/html"`
	if got := h.Get("Link"); got != want {
		t.Errorf("Link = %q\nwant   %q", got, want)
	}
	if !lc.gone(time.Unix(1546300799, 0)) || lc.gone(time.Unix(1546300798, 0)) {
		t.Error("gone must flip exactly at the sunset instant")
	}

	// A successor on another host is linked absolutely.
	cfg.APIs[0].Name = "billing"
	if got := newLifecycle(cfg, cfg.APIs[0]).link[0]; got[:36] != "<https://api.example.com/billing/v2>" {
		t.Errorf("cross-host successor link %q", got)
	}
	// Active versions without a planned deprecation announce nothing.
	if newLifecycle(cfg, cfg.APIs[1]) != nil {
		t.Error("an active version without deprecation got a lifecycle")
	}
	planned := config.API{Name: "orders", Version: "v3", Lifecycle: "active", Deprecation: config.Deprecation{On: "2099-01-01"}}
	if lc := newLifecycle(cfg, planned); lc == nil || lc.deprecation[0] != "@4070908800" || lc.sunsetValue != nil {
		t.Errorf("planned deprecation: %+v", lc)
	}
}
