package waf

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// testCache builds each config once per test binary: at 15-90 ms per
// instance (several times that under -race) rebuilding per test adds up.
var testCache = NewCache()

func mustWAF(tb testing.TB, cfg Config) *WAF {
	tb.Helper()
	w, err := testCache.Get(cfg)
	if err != nil {
		tb.Fatalf("build waf %+v: %v", cfg, err)
	}
	return w
}

// startInspector serves w on a loopback listener the way the gateway stage
// will: read the body (bounded), inspect, refuse with the verdict's status or
// answer 200. The verdict travels back in response headers for the test.
func startInspector(t *testing.T, w *WAF) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, 1<<20))
		if err != nil {
			http.Error(rw, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		v := w.Inspect(r, ip, body)
		h := rw.Header()
		h.Set("X-Waf-Rules", joinInts(v.RuleIDs))
		h.Set("X-Waf-Score", strconv.Itoa(v.Score))
		h.Set("X-Waf-Matched", strconv.FormatBool(v.Matched))
		if v.Err != nil {
			h.Set("X-Waf-Err", v.Err.Error())
		}
		if v.Block {
			rw.WriteHeader(v.Status)
			return
		}
		rw.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func joinInts(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}

// probe is one request of an attacker's table.
type probe struct {
	name    string
	method  string
	target  string // path and query, already percent-encoded as a client would send it
	header  map[string]string
	extra   [][2]string // headers added after header, for repeated names
	ctype   string
	body    string
	family  [2]int // the CRS rule range expected to fire (attacks only)
	comment string
}

// observed is what the listener reported.
type observed struct {
	status  int
	rules   []int
	score   int
	matched bool
	err     string
}

func (o observed) String() string {
	return fmt.Sprintf("status %d, rules [%s], score %d, matched %v%s", o.status, joinInts(o.rules), o.score, o.matched, o.err)
}

func (o observed) hasRuleIn(family [2]int) bool {
	for _, id := range o.rules {
		if id >= family[0] && id <= family[1] {
			return true
		}
	}
	return false
}

func send(t *testing.T, srv *httptest.Server, p probe) observed {
	t.Helper()
	var body io.Reader
	if p.body != "" {
		body = strings.NewReader(p.body)
	}
	method := p.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, srv.URL+p.target, body)
	if err != nil {
		t.Fatalf("%s: build request: %v", p.name, err)
	}
	// A gateway is addressed by name; CRS 920350 scores a numeric Host.
	req.Host = "api.example.com"
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36")
	req.Header.Set("Accept", "application/json")
	if p.ctype != "" {
		req.Header.Set("Content-Type", p.ctype)
	}
	for k, v := range p.header {
		req.Header.Set(k, v)
	}
	for _, kv := range p.extra {
		req.Header.Add(kv[0], kv[1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	o := observed{status: resp.StatusCode}
	for _, s := range strings.Split(resp.Header.Get("X-Waf-Rules"), ",") {
		if id, err := strconv.Atoi(s); err == nil {
			o.rules = append(o.rules, id)
		}
	}
	o.score, _ = strconv.Atoi(resp.Header.Get("X-Waf-Score"))
	o.matched = resp.Header.Get("X-Waf-Matched") == "true"
	if e := resp.Header.Get("X-Waf-Err"); e != "" {
		o.err = ", err " + e
	}
	return o
}
