package server_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn/apikey"
)

// TestIPLists: deny lists refuse, allow lists admit only their networks,
// and a client cannot escape either by sending its own X-Forwarded-For.
func TestIPLists(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	denied := ordersAPI(up.URL())
	denied.APIExtra = "    ip_deny: [127.0.0.0/8]\n"
	allowedElsewhere := billingAPI(up.URL())
	allowedElsewhere.APIExtra = "    ip_allow: [10.0.0.0/8, \"2001:db8::/32\"]\n"
	open := apiConfig{Name: "open", Version: "v1", Spec: "orders-v1.yaml", Upstream: up.URL(), BasePath: "/open/v1"}
	g := startGateway(t, gwConfig{APIs: []apiConfig{denied, allowedElsewhere, open}})
	c := g.client("h2")
	spoof := reqOpts{header: http.Header{"X-Forwarded-For": {"10.1.2.3"}}}
	for _, tc := range []struct {
		name, path string
		o          reqOpts
		status     int
	}{
		{"deny list", "/orders/v1/orders", reqOpts{}, 403},
		{"allow list without us", "/billing/v1/invoices", reqOpts{}, 403},
		{"allow list, spoofed XFF from an untrusted peer", "/billing/v1/invoices", spoof, 403},
		{"no lists", "/open/v1/orders", reqOpts{}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			resp, body := g.do(t, c, "GET", tc.path, tc.o)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 403 {
				if up.count() != before {
					t.Fatal("a refused request reached the upstream")
				}
				if !strings.Contains(string(body), "forbidden") {
					t.Fatalf("body %s", body)
				}
			}
		})
	}
	if m := g.scrape(t); !strings.Contains(m, `gatehouse_denials_total{reason="ip_denied",stage="waf"}`) ||
		!strings.Contains(m, `gatehouse_denials_total{reason="ip_not_allowed",stage="waf"}`) {
		t.Fatal("IP denials not counted")
	}
}

// TestIPListsBehindTrustedProxy: with a trusted proxy the client address
// comes from X-Forwarded-For, and the lists judge that address.
func TestIPListsBehindTrustedProxy(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	api := ordersAPI(up.URL())
	api.APIExtra = "    ip_deny: [203.0.113.0/24]\n"
	g := startGateway(t, gwConfig{TrustedProxies: []string{"127.0.0.1"}, APIs: []apiConfig{api},
		Extra: "ip_deny: [198.51.100.66]\n"})
	c := g.client("h1")
	for xff, want := range map[string]int{"203.0.113.7": 403, "198.51.100.66": 403, "198.51.100.1": 200} {
		resp, _ := g.do(t, c, "GET", "/orders/v1/orders", reqOpts{header: http.Header{"X-Forwarded-For": {xff}}})
		if resp.StatusCode != want {
			t.Errorf("client %s: status %d, want %d", xff, resp.StatusCode, want)
		}
	}
}

// TestMaxInFlight: a burst beyond the API's concurrency cap is shed with
// 503 and Retry-After instead of piling onto the upstream.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	api := ordersAPI(up.URL())
	api.APIExtra = "    max_in_flight: 2\n"
	g := startGateway(t, gwConfig{APIs: []apiConfig{api}})
	c := g.client("h1")
	var wg sync.WaitGroup
	codes := make(chan int, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _, err := g.try(c, "GET", "/orders/v1/orders?sleep=400ms", reqOpts{})
			if err != nil {
				codes <- 0
				return
			}
			if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
				codes <- -1
				return
			}
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[200] != 2 || n[503] != 4 {
		t.Fatalf("outcomes %v, want 2×200 and 4×503 with Retry-After", n)
	}
	// The cap frees up again.
	if resp, _ := g.get(t, c, "/orders/v1/orders"); resp.StatusCode != 200 {
		t.Fatalf("after the burst: %d", resp.StatusCode)
	}
}

// TestPartnerNetworks: a partner's valid key used from outside the
// partner's declared networks is refused.
func TestPartnerNetworks(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	pepperDir := t.TempDir()
	pepper := filepath.Join(pepperDir, "pepper")
	if err := os.WriteFile(pepper, []byte(strings.Repeat("net-test-pepper-", 4)), 0o600); err != nil {
		t.Fatal(err)
	}
	inside := apiConfig{Name: "orders", Version: "v1", Spec: "orders-v1.yaml", Upstream: up.URL(), BasePath: "/orders/v1",
		APIExtra: "    auth: [apikey]\n"}
	extra := "identity: {pepper_file: " + pepper + "}\n" +
		"partners:\n  - {name: local, networks: [127.0.0.0/8]}\n  - {name: remote, networks: [192.0.2.0/24]}\n" +
		"consumers:\n  - {name: local-app, partner: local}\n  - {name: remote-app, partner: remote}\n"
	g := startGateway(t, gwConfig{APIs: []apiConfig{inside}, Extra: extra})
	keys := g.srv.Gateway().Keys()
	if keys == nil {
		t.Fatal("no key service")
	}
	issue := func(consumer string) string {
		k, _, err := keys.Issue(context.Background(), apikey.IssueRequest{Consumer: consumer, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	c := g.client("h2")
	for consumer, want := range map[string]int{"local-app": 200, "remote-app": 403} {
		resp, body := g.do(t, c, "GET", "/orders/v1/orders", reqOpts{header: http.Header{"X-Api-Key": {issue(consumer)}}})
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d: %s", consumer, resp.StatusCode, want, body)
		}
	}
}
