package server_test

// End-to-end tests of the limit stage (rate limits and quotas) through the
// real TLS listener: exact counts, several limits on one request, per-IP
// grouping, the RateLimit headers of draft-ietf-httpapi-ratelimit-headers,
// the 429 problem, concurrency, quotas that survive a restart, and the
// admin quota endpoints.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sfItem is one member of a structured-field List as the RateLimit fields
// use it: a String with integer parameters.
type sfItem struct {
	name   string
	params map[string]int64
}

var sfMember = regexp.MustCompile(`^"((?:[^"\\]|\\.)*)"((?:;[a-z][a-z0-9_.*-]*=-?[0-9]{1,15})*)$`)

// parseSFList parses a RateLimit or RateLimit-Policy value strictly
// (RFC 8941 Lists of Strings with Integer parameters); any other shape
// fails the test.
func parseSFList(t *testing.T, field, v string) []sfItem {
	t.Helper()
	if v == "" {
		t.Fatalf("%s is missing", field)
	}
	var out []sfItem
	for _, m := range strings.Split(v, ",") {
		m = strings.TrimSpace(m)
		g := sfMember.FindStringSubmatch(m)
		if g == nil {
			t.Fatalf("%s member %q is not a structured-field String with integer parameters", field, m)
		}
		it := sfItem{name: g[1], params: map[string]int64{}}
		for _, p := range strings.Split(strings.TrimPrefix(g[2], ";"), ";") {
			if p == "" {
				continue
			}
			k, val, _ := strings.Cut(p, "=")
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				t.Fatalf("%s parameter %q: %v", field, p, err)
			}
			it.params[k] = n
		}
		out = append(out, it)
	}
	return out
}

// rateHeaders reads both fields and checks they name the same policies.
func rateHeaders(t *testing.T, resp *http.Response) (policy, state map[string]sfItem) {
	t.Helper()
	policy, state = map[string]sfItem{}, map[string]sfItem{}
	pl := parseSFList(t, "RateLimit-Policy", resp.Header.Get("RateLimit-Policy"))
	sl := parseSFList(t, "RateLimit", resp.Header.Get("RateLimit"))
	for _, it := range pl {
		if _, ok := it.params["q"]; !ok {
			t.Fatalf("RateLimit-Policy %q has no q", it.name)
		}
		if it.params["w"] < 1 {
			t.Fatalf("RateLimit-Policy %q has no positive w", it.name)
		}
		policy[it.name] = it
	}
	for _, it := range sl {
		if _, ok := policy[it.name]; !ok {
			t.Fatalf("RateLimit names %q, which RateLimit-Policy does not", it.name)
		}
		if it.params["r"] < 0 || it.params["t"] < 0 {
			t.Fatalf("RateLimit %q: negative r or t", it.name)
		}
		state[it.name] = it
	}
	if len(state) != len(policy) {
		t.Fatalf("RateLimit has %d policies, RateLimit-Policy %d", len(state), len(policy))
	}
	return policy, state
}

// assertRateLimited checks a 429 rate-limit problem with Retry-After equal
// to the binding policy's t.
func assertRateLimited(t *testing.T, resp *http.Response, body []byte) int64 {
	t.Helper()
	assertProblem(t, resp, body, http.StatusTooManyRequests, "rate-limited")
	ra, err := strconv.ParseInt(resp.Header.Get("Retry-After"), 10, 64)
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After %q: want a positive number of seconds", resp.Header.Get("Retry-After"))
	}
	return ra
}

func limitedGateway(t *testing.T, limits string, extra ...func(*gwConfig)) (*gw, *echoUpstream) {
	t.Helper()
	up := newEchoUpstream(t, "orders-backend")
	api := ordersAPI(up.URL())
	api.APIExtra = "    limits:\n" + limits
	cfg := gwConfig{TrustedProxies: []string{"127.0.0.1"}, APIs: []apiConfig{api}}
	for _, f := range extra {
		f(&cfg)
	}
	return startGateway(t, cfg), up
}

// from makes a request appear to come from addr (the gateway trusts
// 127.0.0.1 as a proxy in these tests).
func from(addr string) reqOpts {
	return reqOpts{header: http.Header{"X-Forwarded-For": {addr}}}
}

// TestRateLimitBurstThenSteady: a burst of 3 at 60/m passes exactly, the
// 4th is refused with Retry-After 1 and matching headers, and one request
// conforms again each second (never two).
func TestRateLimitBurstThenSteady(t *testing.T) {
	t.Parallel()
	g, up := limitedGateway(t, "      - {per: ip, rate: 60/m, burst: 3}\n")
	c := g.h2
	for i := range 3 {
		resp, body := g.do(t, c, http.MethodGet, "/orders/v1/orders", from("203.0.113.10"))
		echoed(t, resp, body)
		pol, st := rateHeaders(t, resp)
		if p := pol["ip"]; p.params["q"] != 60 || p.params["w"] != 60 {
			t.Fatalf("RateLimit-Policy ip = %v, want q=60 w=60", p.params)
		}
		if r := st["ip"].params["r"]; r != int64(2-i) {
			t.Fatalf("request %d: RateLimit r=%d, want %d", i+1, r, 2-i)
		}
	}
	before := up.count()
	resp, body := g.do(t, c, http.MethodGet, "/orders/v1/orders", from("203.0.113.10"))
	ra := assertRateLimited(t, resp, body)
	_, st := rateHeaders(t, resp)
	if ra != 1 || st["ip"].params["t"] != ra || st["ip"].params["r"] != 0 {
		t.Fatalf("denied: Retry-After %d, RateLimit %v: want 1, t=1, r=0", ra, st["ip"].params)
	}
	if up.count() != before {
		t.Fatal("a refused request reached the upstream")
	}
	// Steady state: one request per second conforms. Poll until one
	// passes; the very next is refused again.
	for round := range 2 {
		eventually(t, 3*time.Second, "a request conforms again", func() bool {
			resp, _ := g.do(t, c, http.MethodGet, "/orders/v1/orders", from("203.0.113.10"))
			return resp.StatusCode == http.StatusOK
		})
		resp, body := g.do(t, c, http.MethodGet, "/orders/v1/orders", from("203.0.113.10"))
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("round %d: second request within the interval got %d, want 429", round, resp.StatusCode)
		}
		assertRateLimited(t, resp, body)
	}
	// Another client is unaffected.
	resp, body = g.do(t, c, http.MethodGet, "/orders/v1/orders", from("203.0.113.11"))
	echoed(t, resp, body)
	if v := metricValue(g.scrape(t), "gatehouse_denials_total", "stage", "limit", "reason", "rate_limited"); v < 3 {
		t.Fatalf("gatehouse_denials_total{limit,rate_limited} = %v, want >= 3", v)
	}
}

// TestRateLimitSeveralLimits: all limits must pass, and a request refused
// by one consumes no other's budget.
func TestRateLimitSeveralLimits(t *testing.T) {
	t.Parallel()
	g, _ := limitedGateway(t, ""+
		"      - {name: wide, per: ip, rate: 100/h, burst: 100}\n"+
		"      - {name: reads, per: [ip, operation], rate: 2/h, operations: [getOrder]}\n")
	c := g.h2
	for i := range 2 {
		resp, body := g.do(t, c, http.MethodGet, "/orders/v1/orders/o-1", from("198.51.100.7"))
		echoed(t, resp, body)
		_, st := rateHeaders(t, resp)
		if st["wide"].params["r"] != int64(99-i) || st["reads"].params["r"] != int64(1-i) {
			t.Fatalf("request %d: RateLimit %v", i+1, resp.Header.Get("RateLimit"))
		}
	}
	for range 3 {
		resp, body := g.do(t, c, http.MethodGet, "/orders/v1/orders/o-1", from("198.51.100.7"))
		assertRateLimited(t, resp, body)
		_, st := rateHeaders(t, resp)
		if st["wide"].params["r"] != 98 {
			t.Fatalf("denied request shows wide r=%d, want 98 (untouched)", st["wide"].params["r"])
		}
	}
	// listOrders is limited by "wide" only; three denials took nothing.
	resp, body := g.do(t, c, http.MethodGet, "/orders/v1/orders", from("198.51.100.7"))
	echoed(t, resp, body)
	pol, st := rateHeaders(t, resp)
	if _, ok := pol["reads"]; ok {
		t.Fatal("listOrders carries the getOrder-only policy")
	}
	if st["wide"].params["r"] != 97 {
		t.Fatalf("wide r=%d after 3 admitted and 3 refused requests, want 97", st["wide"].params["r"])
	}
}

// TestRateLimitIPGrouping: per-IP limits group IPv6 clients by /64 (one
// client's privacy addresses share a budget) and IPv4 by /32; the client
// address comes from X-Forwarded-For only through a trusted proxy.
func TestRateLimitIPGrouping(t *testing.T) {
	t.Parallel()
	g, _ := limitedGateway(t, "      - {per: ip, rate: 2/h}\n")
	c := g.h2
	cases := []struct {
		name  string
		addrs []string // sent in order; the last is the one judged
		want  int
	}{
		{"same /64 shares one budget", []string{"2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:aaaa:bbbb:cccc:dddd"}, 429},
		{"neighbouring /64 has its own", []string{"2001:db8:1:3::1"}, 200},
		{"IPv4 /32 each", []string{"192.0.2.1", "192.0.2.1", "192.0.2.2"}, 200},
		{"same IPv4 thrice", []string{"192.0.2.9", "192.0.2.9", "192.0.2.9"}, 429},
		{"IPv4-mapped IPv6 is the IPv4 client", []string{"192.0.2.20", "::ffff:192.0.2.20", "192.0.2.20"}, 429},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			for _, a := range tc.addrs {
				resp, _ = g.do(t, c, http.MethodGet, "/orders/v1/orders", from(a))
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestRateLimitConcurrent: 8 clients racing for a budget of 40 get exactly
// 40 admissions between them.
func TestRateLimitConcurrent(t *testing.T) {
	t.Parallel()
	g, up := limitedGateway(t, "      - {per: api, rate: 40/h}\n")
	var ok, limited, other atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			c := g.client(protos[w%2])
			for range 12 {
				resp, _, err := g.try(c, http.MethodGet, "/orders/v1/orders", from(fmt.Sprintf("203.0.113.%d", 50+w)))
				switch {
				case err != nil:
					other.Add(1)
				case resp.StatusCode == 200:
					ok.Add(1)
				case resp.StatusCode == 429:
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 40 || limited.Load() != 56 || other.Load() != 0 {
		t.Fatalf("admitted %d, limited %d, other %d: want 40, 56, 0", ok.Load(), limited.Load(), other.Load())
	}
	if up.count() != 40 {
		t.Fatalf("upstream saw %d requests, want 40", up.count())
	}
}

// TestRateLimitReloadKeepsState: a reload that keeps a rule keeps its
// counters; a changed rule starts afresh.
func TestRateLimitReloadKeepsState(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	api := ordersAPI(up.URL())
	api.APIExtra = "    limits:\n      - {per: ip, rate: 2/h}\n"
	cfg := gwConfig{TrustedProxies: []string{"127.0.0.1"}, APIs: []apiConfig{api}}
	g := startGateway(t, cfg)
	for range 2 {
		resp, body := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("203.0.113.70"))
		echoed(t, resp, body)
	}
	// A harmless change elsewhere: the limit keeps its state.
	cfg.Paths = "allow_encoded_slash: true"
	writeFileAtomic(t, g.cfgPath, cfg.render())
	if resp, body := g.adminDo(t, http.MethodPost, "/v1/reload", adminToken); resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}
	if resp, _ := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("203.0.113.70")); resp.StatusCode != 429 {
		t.Fatalf("after a reload that kept the rule: %d, want 429", resp.StatusCode)
	}
	api.APIExtra = "    limits:\n      - {per: ip, rate: 3/h}\n"
	cfg.APIs = []apiConfig{api}
	writeFileAtomic(t, g.cfgPath, cfg.render())
	if resp, body := g.adminDo(t, http.MethodPost, "/v1/reload", adminToken); resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}
	for i := range 3 {
		if resp, _ := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("203.0.113.70")); resp.StatusCode != 200 {
			t.Fatalf("changed rule, request %d: %d, want 200 (fresh budget)", i+1, resp.StatusCode)
		}
	}
}

// TestRateLimitConfigErrors: bad limits are refused at load with the file
// and line, and no gateway starts.
func TestRateLimitConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, limits, want, extra string }{
		{"bad rate", "      - {per: ip, rate: fast}\n", "rate", ""},
		{"zero count", "      - {per: ip, rate: 0/s}\n", "rate", ""},
		{"unknown key", "      - {per: country, rate: 1/s}\n", "per", ""},
		{"unknown operation", "      - {per: ip, rate: 1/s, operations: [nope]}\n", "no operation \"nope\"", ""},
		{"duplicate names", "      - {per: ip, rate: 1/s}\n      - {per: ip, rate: 5/m}\n", "same name", ""},
		{"unknown time zone", "      - {per: ip, rate: 1/s}\n", "unknown time zone", "consumers:\n  - {name: c1, quota: {requests: 5, per: day, time_zone: Mars/Olympus}}\n"},
		{"quota period", "      - {per: ip, rate: 1/s}\n", "per", "consumers:\n  - {name: c1, quota: {requests: 5, per: week}}\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := ordersAPI("http://127.0.0.1:9")
			api.APIExtra = "    limits:\n" + tc.limits
			_, _, err := startErr(t, gwConfig{APIs: []apiConfig{api}, Extra: tc.extra}.render(), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "gatehouse.yaml:") {
				t.Fatalf("error %v: want a file:line error mentioning %q", err, tc.want)
			}
		})
	}
}

// quotaConfig is an identity config whose consumers have quotas.
func quotaConfig(upstream, redis, top string) idConfig {
	return idConfig{
		Redis: redis,
		Top:   top,
		Directory: `partners:
  - {name: acme, quota: {requests: 5, per: month, time_zone: Europe/Berlin}}
consumers:
  - {name: acme-billing, partner: acme, scopes: ["orders:read"], quota: {requests: 3, per: day, time_zone: Europe/Berlin}}
  - {name: acme-ops, partner: acme, scopes: ["orders:read"]}
  - {name: solo-app, scopes: ["orders:read"]}
`,
		APIs: []idAPI{{Name: "orders", BasePath: "/orders/v1", Upstream: upstream,
			Body: "    auth: [apikey]\n    policies: [{operation: \"*\", scopes: [\"orders:read\"]}]\n"}},
	}
}

type quotaJSON struct {
	Used      int64     `json:"used"`
	Limit     int64     `json:"limit"`
	Remaining int64     `json:"remaining"`
	ResetsAt  time.Time `json:"resets_at"`
	Period    string    `json:"period"`
	TimeZone  string    `json:"time_zone"`
}

func (g *gw) quota(t *testing.T, kind, name string) quotaJSON {
	t.Helper()
	resp, body := g.adminJSON(t, http.MethodGet, "/v1/"+kind+"s/"+name+"/quota", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("quota of %s %s: %d %s", kind, name, resp.StatusCode, body)
	}
	var q quotaJSON
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		t.Fatalf("quota body %s: %v", body, err)
	}
	return q
}

// TestQuotaPersistsAcrossRestart: a consumer's daily quota counts in the
// store, survives a restart of the gateway on the same SQLite file, and
// refuses with a distinct 429 once used up; the partner's monthly quota
// counts all its consumers; the admin API shows both.
func TestQuotaPersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	dir := t.TempDir()
	text := quotaConfig(up.URL(), "", "").render()
	g := startGatewayIn(t, dir, text)
	billing, _ := g.issueKey(t, "acme-billing", []string{"orders:read"}, 0)
	ops, _ := g.issueKey(t, "acme-ops", []string{"orders:read"}, 0)
	for range 2 {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", billing); s != 200 {
			t.Fatalf("call within quota: %d", s)
		}
	}
	q := g.quota(t, "consumer", "acme-billing")
	berlin, _ := time.LoadLocation("Europe/Berlin")
	y, m, d := time.Now().In(berlin).Date()
	wantReset := time.Date(y, m, d+1, 0, 0, 0, 0, berlin)
	if q.Used != 2 || q.Limit != 3 || q.Remaining != 1 || q.Period != "day" || q.TimeZone != "Europe/Berlin" || !q.ResetsAt.Equal(wantReset) {
		t.Fatalf("quota %+v: want used 2 of 3, day in Europe/Berlin, resets at %s", q, wantReset)
	}
	g.srv.Close()

	g = startGatewayIn(t, dir, text)
	if q := g.quota(t, "consumer", "acme-billing"); q.Used != 2 {
		t.Fatalf("after restart used = %d, want 2", q.Used)
	}
	if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", billing); s != 200 {
		t.Fatalf("third call: %d, want 200", s)
	}
	resp, body := g.call(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", billing)
	assertProblem(t, resp, body, http.StatusTooManyRequests, "quota-exceeded")
	ra, err := strconv.ParseInt(resp.Header.Get("Retry-After"), 10, 64)
	if err != nil || ra < 1 || ra > 25*3600 {
		t.Fatalf("Retry-After %q: want the seconds until midnight in Berlin", resp.Header.Get("Retry-After"))
	}
	// The refused call consumed no partner quota: acme has 5, billing used 3.
	if p := g.quota(t, "partner", "acme"); p.Used != 3 || p.Period != "month" {
		t.Fatalf("partner quota %+v: want used 3 per month", p)
	}
	for i := range 2 {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", ops); s != 200 {
			t.Fatalf("acme-ops call %d: %d, want 200", i+1, s)
		}
	}
	resp, body = g.call(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", ops)
	assertProblem(t, resp, body, http.StatusTooManyRequests, "quota-exceeded")
	if v := metricValue(g.scrape(t), "gatehouse_denials_total", "stage", "limit", "reason", "quota_exceeded"); v != 2 {
		t.Fatalf("quota_exceeded denials = %v, want 2", v)
	}
	// solo-app has no quota; unknown names and bad names are 404 problems.
	if s := g.status(t, http.MethodGet, "/orders/v1/orders", "X-API-Key", mustKey(g, t, "solo-app")); s != 200 {
		t.Fatalf("consumer without quota: %d", s)
	}
	for _, path := range []string{"/v1/consumers/solo-app/quota", "/v1/consumers/nobody/quota", "/v1/partners/ACME/quota"} {
		resp, body := g.adminJSON(t, http.MethodGet, path, nil)
		assertProblemStatus(t, resp, body, http.StatusNotFound)
	}
	// The admin token is required.
	if resp, _ := g.adminDo(t, http.MethodGet, "/v1/consumers/acme-billing/quota", "wrong-token-0123456789"); resp.StatusCode != 401 {
		t.Fatalf("quota without the admin token: %d, want 401", resp.StatusCode)
	}
}

func mustKey(g *gw, t *testing.T, consumer string) string {
	k, _ := g.issueKey(t, consumer, []string{"orders:read"}, 0)
	return k
}

func assertProblemStatus(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d (%s), want %d problem: %s", resp.StatusCode, resp.Header.Get("Content-Type"), status, body)
	}
}

// TestRateLimitPerConsumer: per-consumer limits give each consumer its own
// budget; anonymous callers (a public operation) fall back to their IP.
func TestRateLimitPerConsumer(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "orders-backend")
	cfg := quotaConfig(up.URL(), "", "")
	cfg.Directory = defaultDirectory
	cfg.APIs[0].Body = "    auth: [apikey]\n    policies:\n      - {operation: listOrders, public: true}\n      - {operation: \"*\", scopes: [\"orders:read\"]}\n" +
		"    limits:\n      - {per: consumer, rate: 2/h}\n"
	g := startIdentityGateway(t, cfg)
	a, b := mustKey(g, t, "acme-billing"), mustKey(g, t, "initech-app")
	for _, key := range []string{a, a, b, b} {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders/o-1", "X-API-Key", key); s != 200 {
			t.Fatalf("within budget: %d", s)
		}
	}
	for _, key := range []string{a, b} {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders/o-1", "X-API-Key", key); s != 429 {
			t.Fatalf("third call of one consumer: %d, want 429", s)
		}
	}
	// Anonymous: its own budget by IP, not a consumer's.
	for i, want := range []int{200, 200, 429} {
		if s := g.status(t, http.MethodGet, "/orders/v1/orders"); s != want {
			t.Fatalf("anonymous call %d: %d, want %d", i+1, s, want)
		}
	}
}

// TestRateLimitFloodBounded: a flood of distinct client addresses through
// the listener leaves the in-process limiter within its key bound, and the
// limit still holds for a client seen just now.
func TestRateLimitFloodBounded(t *testing.T) {
	t.Parallel()
	g, _ := limitedGateway(t, "      - {per: ip, rate: 2/h}\n", func(c *gwConfig) {
		c.Limits = map[string]string{"local_max_keys": "512"}
	})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 750 {
				addr := fmt.Sprintf("2001:db8:%x:%x::1", w, i) // 3000 distinct /64s
				if resp, _, err := g.try(g.h2, http.MethodGet, "/orders/v1/orders", from(addr)); err != nil || resp.StatusCode != 200 {
					t.Errorf("flood request from %s: %v %v", addr, err, resp)
					return
				}
			}
		})
	}
	wg.Wait()
	n, bound := g.srv.Gateway().LocalLimiterKeys()
	if bound > 4096 || n > bound || n == 0 {
		t.Fatalf("limiter tracks %d keys, bound %d: want 0 < n <= bound <= 4096", n, bound)
	}
	for i, want := range []int{200, 200, 429} {
		if resp, _ := g.do(t, g.h2, http.MethodGet, "/orders/v1/orders", from("2001:db8:ffff::1")); resp.StatusCode != want {
			t.Fatalf("after the flood, request %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}
