package server_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// failureGateway has one API on a working (but steerable) echo upstream and
// one on a closed port, with a 200ms upstream response timeout.
func failureGateway(t *testing.T) (g *gw, up *echoUpstream, downPort string) {
	up = newEchoUpstream(t, "orders-backend")
	down := closedAddr(t)
	_, downPort, _ = net.SplitHostPort(down)
	g = startGateway(t, gwConfig{
		Limits: map[string]string{"upstream_response_timeout": "200ms", "upstream_connect_timeout": "1s"},
		APIs: []apiConfig{
			ordersAPI(up.URL()),
			{Name: "down", Version: "v1", Spec: "billing-v1.yaml", Upstream: "http://" + down, BasePath: "/down/v1"},
		},
	})
	return g, up, downPort
}

// TestUpstreamFailures: each way an upstream can fail gives the client a
// problem that does not reveal the upstream, is counted by kind in
// gatehouse_upstream_errors_total, and leaves the gateway serving.
func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	g, _, downPort := failureGateway(t)
	cases := []struct {
		name, path string
		status     int
		kind       string // problem type
		api        string // metric label api
		metric     string // metric label kind
		maxTime    time.Duration
	}{
		{name: "upstream down", path: "/down/v1/invoices", status: 502, kind: "upstream-unavailable", api: "down", metric: "refused", maxTime: 3 * time.Second},
		{name: "upstream slower than upstream_response_timeout", path: "/orders/v1/orders?sleep=2s", status: 504, kind: "upstream-timeout", api: "orders", metric: "timeout", maxTime: 1500 * time.Millisecond},
		{name: "upstream closes without answering", path: "/orders/v1/orders/1?fail=close", status: 502, kind: "upstream-unavailable", api: "orders", metric: "reset", maxTime: 3 * time.Second},
	}
	for _, tc := range cases {
		for _, proto := range protos {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				before := metricValue(g.scrape(t), "gatehouse_upstream_errors_total", "api", tc.api, "kind", tc.metric)
				start := time.Now()
				resp, body := g.do(t, g.client(proto), http.MethodGet, tc.path, reqOpts{header: http.Header{"X-Request-Id": {"upstream-failure-test"}}})
				if d := time.Since(start); d > tc.maxTime {
					t.Errorf("answer took %v, want under %v", d, tc.maxTime)
				}
				p := assertProblem(t, resp, body, tc.status, tc.kind)
				if strings.Contains(string(body), downPort) {
					t.Errorf("problem reveals the upstream port %s: %s", downPort, body)
				}
				if p.RequestID != "upstream-failure-test" {
					t.Errorf("request_id %q, want the client's", p.RequestID)
				}
				after := metricValue(g.scrape(t), "gatehouse_upstream_errors_total", "api", tc.api, "kind", tc.metric)
				if after != before+1 {
					t.Errorf(`gatehouse_upstream_errors_total{api=%q,kind=%q} went %v -> %v, want +1`, tc.api, tc.metric, before, after)
				}
				// The gateway keeps serving.
				resp, body = g.get(t, g.client(proto), "/orders/v1/orders")
				echoed(t, resp, body)
			})
		}
	}
	// The detail goes to the log, not the client.
	if logs := g.logs.String(); !strings.Contains(logs, "upstream error") || !strings.Contains(logs, "kind=refused") {
		t.Errorf("upstream failures not logged with their kind:\n%s", logs)
	}
}

// TestUpstreamResetMidResponse: once the upstream's headers are through,
// a reset can only abort the client's response; the next request works.
func TestUpstreamResetMidResponse(t *testing.T) {
	t.Parallel()
	g, _, _ := failureGateway(t)
	for _, proto := range protos {
		t.Run(proto, func(t *testing.T) {
			resp, body, err := g.try(g.client(proto), http.MethodGet, "/orders/v1/orders?fail=midbody", reqOpts{})
			switch {
			case err != nil:
				// aborted: the client saw the stream/connection break
			case resp.StatusCode == http.StatusBadGateway:
				assertProblem(t, resp, body, 502, "upstream-unavailable")
			case resp.StatusCode == http.StatusOK:
				t.Fatalf("truncated upstream response delivered as a complete 200: %q", body)
			default:
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			for i := 0; i < 3; i++ {
				resp, body := g.get(t, g.client(proto), "/orders/v1/orders")
				echoed(t, resp, body)
			}
		})
	}
}

// TestUpstreamResetMidResponseCounted: an upstream that dies mid-body is an
// upstream failure and must show in gatehouse_upstream_errors_total, not as
// an allowed 2xx.
func TestUpstreamResetMidResponseCounted(t *testing.T) {
	t.Parallel()
	g, _, _ := failureGateway(t)
	before := metricValue(g.scrape(t), "gatehouse_upstream_errors_total", "api", "orders", "kind", "reset")
	okBefore := metricValue(g.scrape(t), "gatehouse_requests_total", "api", "orders", "operation", "listOrders", "status_class", "2xx", "decision", "allow")
	_, _, _ = g.try(g.h1, http.MethodGet, "/orders/v1/orders?fail=midbody", reqOpts{})
	eventually(t, 2*time.Second, "mid-body reset counted as an upstream error", func() bool {
		return metricValue(g.scrape(t), "gatehouse_upstream_errors_total", "api", "orders", "kind", "reset") == before+1
	})
	if ok := metricValue(g.scrape(t), "gatehouse_requests_total", "api", "orders", "operation", "listOrders", "status_class", "2xx", "decision", "allow"); ok != okBefore {
		t.Errorf("aborted response counted as an allowed 2xx (%v -> %v)", okBefore, ok)
	}
}
