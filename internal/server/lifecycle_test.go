package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lifecycleAPIs renders four versions of one API: v1 deprecated with a
// sunset at v1Sunset, v0 past its sunset, v2 live, vr retired.
func lifecycleAPIs(upstream, v1Sunset string) string {
	common := func(version, extra string) string {
		return fmt.Sprintf(`  - name: orders
    version: %s
    owner: {team: e2e, contact: e2e@example.com}
    spec: specs/orders-v1.yaml
    upstream: %s
    route: {base_path: /orders/%s}
    auth: [apikey]
    policies: [{operation: "*", scopes: ["orders:read"]}]
%s`, version, upstream, version, extra)
	}
	return common("v1", fmt.Sprintf("    lifecycle: deprecated\n    deprecation: {on: 2026-01-01, sunset: %q, successor: v2, link: https://developer.example.com/orders-v1}\n", v1Sunset)) +
		common("v0", "    lifecycle: deprecated\n    deprecation: {on: 2025-01-01, sunset: 2026-01-01, successor: v2}\n") +
		common("v2", "") +
		common("vr", "    lifecycle: retired\n")
}

// TestDeprecationLifecycle: a deprecated version announces itself on every
// answer (RFC 9745, RFC 8594, successor and deprecation links), a version
// past its sunset answers 410 to everyone, a retired one is unreachable,
// calls by partners are counted per consumer and an approaching sunset
// raises one alert; a reload moves a version past its sunset at once.
func TestDeprecationLifecycle(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders")
	soon := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	base := idConfig{}.render()
	dir := t.TempDir()
	g := startGatewayIn(t, dir, base+lifecycleAPIs(up.URL(), soon.Format(time.RFC3339)))
	key, _ := g.issueKey(t, "acme-billing", []string{"orders:read"}, time.Hour)
	auth := []string{"X-API-Key", key}

	// v1: served, with the notice.
	resp, body := g.call(t, http.MethodGet, "/orders/v1/orders", auth...)
	if resp.StatusCode != 200 {
		t.Fatalf("deprecated v1: %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Deprecation"); got != "@1767225600" {
		t.Errorf("Deprecation = %q, want @1767225600 (2026-01-01 as an RFC 9745 structured date)", got)
	}
	if st, err := http.ParseTime(resp.Header.Get("Sunset")); err != nil || !st.Equal(soon) {
		t.Errorf("Sunset = %q (%v), want %v as an HTTP-date", resp.Header.Get("Sunset"), err, soon)
	}
	link := strings.Join(resp.Header.Values("Link"), ", ")
	for _, want := range []string{`</orders/v2>; rel="successor-version"`, `<https://developer.example.com/orders-v1>; rel="deprecation"`} {
		if !strings.Contains(link, want) {
			t.Errorf("Link %q lacks %s", link, want)
		}
	}
	// Refusals carry it too: a client learns of the deprecation from its 401.
	resp, _ = g.call(t, http.MethodGet, "/orders/v1/orders")
	if resp.StatusCode != 401 || resp.Header.Get("Deprecation") == "" {
		t.Errorf("unauthenticated v1: %d, Deprecation %q", resp.StatusCode, resp.Header.Get("Deprecation"))
	}

	// v0: gone, for everyone, pointing at the successor.
	for _, hdr := range [][]string{auth, nil} {
		resp, body = g.call(t, http.MethodGet, "/orders/v0/orders/42", hdr...)
		var p struct {
			Type, Detail string
			Status       int
		}
		if err := json.Unmarshal(body, &p); err != nil || resp.StatusCode != 410 || p.Status != 410 ||
			resp.Header.Get("Content-Type") != "application/problem+json" || !strings.HasSuffix(p.Type, "/gone") {
			t.Fatalf("v0 past sunset: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if !strings.Contains(p.Detail, "2026-01-01") || !strings.Contains(p.Detail, "version v2 at /orders/v2") {
			t.Errorf("410 detail %q does not point to the successor", p.Detail)
		}
		if !strings.Contains(resp.Header.Get("Link"), `</orders/v2>; rel="successor-version"`) {
			t.Errorf("410 without successor link: %q", resp.Header.Get("Link"))
		}
	}
	// vr: retired, unreachable. v2: live, no notice.
	if s := g.status(t, http.MethodGet, "/orders/vr/orders", auth...); s != 404 {
		t.Errorf("retired version answers %d, want 404", s)
	}
	resp, _ = g.call(t, http.MethodGet, "/orders/v2/orders", auth...)
	if resp.StatusCode != 200 || resp.Header.Get("Deprecation") != "" || resp.Header.Get("Sunset") != "" {
		t.Errorf("live v2: %d Deprecation=%q Sunset=%q", resp.StatusCode, resp.Header.Get("Deprecation"), resp.Header.Get("Sunset"))
	}

	// Two more calls from acme; one from a consumer without a partner.
	g.call(t, http.MethodGet, "/orders/v1/orders/7", auth...)
	g.call(t, http.MethodGet, "/orders/v1/orders/8", auth...)
	soloKey, _ := g.issueKey(t, "solo-app", []string{"orders:read"}, time.Hour)
	g.call(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", soloKey)

	m := g.scrape(t)
	if n := metricValue(m, "gatehouse_deprecated_calls_total", "api", "orders", "version", "v1", "partner", "acme"); n != 3 {
		t.Errorf("deprecated calls by acme = %v, want 3", n)
	}
	if n := metricValue(m, "gatehouse_sunset_alerts_total", "partner", "acme"); n != 1 {
		t.Errorf("sunset alerts for acme = %v, want exactly 1 (deduplicated)", n)
	}
	if n := metricValue(m, "gatehouse_sunset_alerts_total"); n != 1 {
		t.Errorf("sunset alerts in all = %v, want 1 (consumers without a partner raise none)", n)
	}
	resp, body = g.adminJSON(t, http.MethodGet, "/v1/deprecations", nil)
	var list struct {
		Callers []struct {
			API, Version, Consumer, Partner string
			Calls                           int64
		}
	}
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/deprecations: %d %s", resp.StatusCode, body)
	}
	got := map[string]int64{}
	for _, c := range list.Callers {
		got[c.Consumer+"/"+c.Partner+"/"+c.Version] = c.Calls
	}
	if got["acme-billing/acme/v1"] != 3 || got["solo-app//v1"] != 1 || len(got) != 2 {
		t.Errorf("deprecation callers = %v", got)
	}
	if !strings.Contains(g.logs.String(), "alert=sunset_approaching") {
		t.Error("the approaching sunset was not logged as an alert")
	}
	eventually(t, 5*time.Second, "the sunset alert in the alert list", func() bool {
		_, body := g.adminJSON(t, http.MethodGet, "/v1/alerts", nil)
		return strings.Contains(string(body), `sunset_approaching`) && strings.Contains(string(body), `partner:acme`)
	})

	// The sunset passes by config change: v1 is gone after the reload.
	writeFileAtomic(t, filepath.Join(dir, "gatehouse.yaml"), base+lifecycleAPIs(up.URL(), time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)))
	if err := g.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := g.status(t, http.MethodGet, "/orders/v1/orders", auth...); s != 410 {
		t.Errorf("v1 after its sunset: %d, want 410", s)
	}
}
