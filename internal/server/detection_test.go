package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDetectionAutoResponse: five refused keys from one address within a
// minute raise an auth_failure_burst alert, delivered to a Slack-format
// webhook, whose automatic response blocks the address on every API; the
// operator reverts the response and acknowledges the alert through the
// admin API.
func TestDetectionAutoResponse(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var posts []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mu.Lock()
		posts = append(posts, string(b))
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	orders := newEchoUpstream(t, "orders")
	billing := newEchoUpstream(t, "billing")
	g := startIdentityGateway(t, idConfig{APIs: policyAPIs(orders.URL(), billing.URL(), "apikey"), Top: `detection:
  responses: {auth_failure_burst: block_ip}
  response_ttl: 10m
  thresholds: {auth_fail_ip: 5}
  webhooks: [{url: "` + hook.URL + `", format: slack, min_severity: medium}]
`})
	good, _ := g.issueKey(t, "acme-billing", nil, time.Hour)
	if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", good); s != 200 {
		t.Fatalf("good key before the attack: %d", s)
	}
	for range 5 {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", keyWithOtherSecret(good)); s != 401 {
			t.Fatalf("forged key: %d, want 401", s)
		}
	}
	eventually(t, 5*time.Second, "the address is blocked by the automatic response", func() bool {
		return g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", good) == 403
	})

	type alert struct {
		ID, Detector, Severity, Subject, Response string
		Count                                     int
		RevertedAt                                *time.Time `json:"reverted_at"`
	}
	list := func(all bool) []alert {
		path := "/v1/alerts"
		if all {
			path += "?all=true"
		}
		resp, body := g.adminJSON(t, http.MethodGet, path, nil)
		var out struct{ Alerts []alert }
		if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return out.Alerts
	}
	as := list(false)
	if len(as) != 1 || as[0].Detector != "auth_failure_burst" || as[0].Subject != "ip:127.0.0.1" || as[0].Severity != "high" ||
		!strings.HasPrefix(as[0].Response, "network 127.0.0.1/32 until ") {
		t.Fatalf("alerts = %+v", as)
	}
	eventually(t, 5*time.Second, "the webhook received the alert", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(posts) == 1 && strings.Contains(posts[0], `"text":"[HIGH] auth_failure_burst`)
	})
	if m := g.scrape(t); metricValue(m, "gatehouse_anomalies_total", "detector", "auth_failure_burst") != 1 ||
		metricValue(m, "gatehouse_alert_responses_total", "action", "block_ip", "result", "done") != 1 ||
		metricValue(m, "gatehouse_denials_total", "stage", "waf", "reason", "ip_blocked") < 1 {
		t.Errorf("metrics:\n%s", grepLines(m, "anomal", "alert_responses", "ip_blocked"))
	}

	// Revert the response: the address works again; reverting twice is a 409.
	resp, body := g.adminJSON(t, http.MethodPost, "/v1/alerts/"+as[0].ID+"/revert", map[string]string{"by": "alice"})
	if resp.StatusCode != 200 {
		t.Fatalf("revert: %d %s", resp.StatusCode, body)
	}
	if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", good); s != 200 {
		t.Errorf("after the revert: %d, want 200", s)
	}
	if resp, _ := g.adminJSON(t, http.MethodPost, "/v1/alerts/"+as[0].ID+"/revert", nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("second revert: %d, want 409", resp.StatusCode)
	}
	resp, _ = g.adminJSON(t, http.MethodPost, "/v1/alerts/"+as[0].ID+"/ack", map[string]string{"by": "alice"})
	if resp.StatusCode != 200 || len(list(false)) != 0 || len(list(true)) != 1 || list(true)[0].RevertedAt == nil {
		t.Errorf("after ack: %d open=%v all=%v", resp.StatusCode, list(false), list(true))
	}
	if resp, _ := g.adminJSON(t, http.MethodPost, "/v1/alerts/al-nope/ack", nil); resp.StatusCode != 404 {
		t.Errorf("ack unknown: %d", resp.StatusCode)
	}
}

func grepLines(text string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestDetectionThrottle: the throttle response keeps serving the address,
// at the throttle rate, until the operator reverts it.
func TestDetectionThrottle(t *testing.T) {
	t.Parallel()
	orders := newEchoUpstream(t, "orders")
	billing := newEchoUpstream(t, "billing")
	g := startIdentityGateway(t, idConfig{APIs: policyAPIs(orders.URL(), billing.URL(), "apikey"), Top: `detection:
  responses: {auth_failure_burst: throttle}
  throttle_rate: 6/m
  thresholds: {auth_fail_ip: 5}
`})
	good, _ := g.issueKey(t, "acme-billing", nil, time.Hour)
	for range 5 {
		g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", keyWithOtherSecret(good))
	}
	var alertID string
	eventually(t, 5*time.Second, "the throttle alert", func() bool {
		_, body := g.adminJSON(t, http.MethodGet, "/v1/alerts", nil)
		var out struct {
			Alerts []struct{ ID, Response string }
		}
		if json.Unmarshal(body, &out) != nil || len(out.Alerts) != 1 || !strings.HasPrefix(out.Alerts[0].Response, "throttle ip:127.0.0.1 until ") {
			return false
		}
		alertID = out.Alerts[0].ID
		return true
	})
	// 6/m with a burst of 1: the first call passes, the next ones are 429.
	codes := map[int]int{}
	for range 4 {
		codes[g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", good)]++
	}
	if codes[200] != 1 || codes[429] != 3 {
		t.Errorf("throttled caller got %v, want one 200 and three 429", codes)
	}
	if resp, body := g.adminJSON(t, http.MethodPost, "/v1/alerts/"+alertID+"/revert", nil); resp.StatusCode != 200 {
		t.Fatalf("revert: %d %s", resp.StatusCode, body)
	}
	for range 3 {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", good); s != 200 {
			t.Fatalf("after the revert: %d, want 200", s)
		}
	}
	if n := metricValue(g.scrape(t), "gatehouse_denials_total", "stage", "limit", "reason", "throttled"); n != 3 {
		t.Errorf("throttled denials = %v, want 3", n)
	}
}

// TestNewAdminEndpointsNeedToken: every admin endpoint this session added
// refuses a missing or wrong token (and never answers 200 to one).
func TestNewAdminEndpointsNeedToken(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders")
	g := startGateway(t, gwConfig{APIs: []apiConfig{ordersAPI(up.URL())}})
	for _, ep := range []struct{ method, path string }{
		{"GET", "/v1/alerts"}, {"POST", "/v1/alerts/al-x/ack"}, {"POST", "/v1/alerts/al-x/revert"},
		{"GET", "/v1/deprecations"}, {"GET", "/v1/consumers/acme/quota"}, {"GET", "/v1/partners/acme/quota"}, {"GET", "/v1/audit"},
	} {
		for _, tok := range []string{"", "wrong-token-0123456789"} {
			if resp, _ := g.adminDo(t, ep.method, ep.path, tok); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", ep.method, ep.path, tok, resp.StatusCode)
			}
		}
	}
}
