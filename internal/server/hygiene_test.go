package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/gateway"
)

// leakyUpstream is a backend that returns more than its spec documents
// (password hashes, internal notes, nested in arrays), leaks its stack in
// 5xx bodies and advertises its software in headers.
type leakyUpstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	// bodies and encodings the upstream received, by path
	bodies    map[string][]byte
	acceptEnc map[string]string
}

const leakyOrderJSON = `{"id":"3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e","status":"open","password_hash":"$2b$10$N9qo8uLOickgx2ZMRZoMye",` +
	`"internal_notes":"VIP; shard 7","items":[{"sku":"ABC-1","qty":1,"cost_price":3.2,"password_hash":"x"}],` +
	`"customer":{"name":"Ann","email":"ann@example.com","ssn":"078-05-1120"},"metadata":{"ssn":"1","k":"v"}}`

func newLeakyUpstream(t *testing.T) *leakyUpstream {
	t.Helper()
	u := &leakyUpstream{bodies: map[string][]byte{}, acceptEnc: map[string]string{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies[r.URL.Path] = b
		u.acceptEnc[r.URL.Path] = r.Header.Get("Accept-Encoding")
		u.mu.Unlock()
		h := w.Header()
		h.Set("Server", "Apache/2.4.1 (Unix) PHP/5.3")
		h.Set("X-Powered-By", "PHP/5.3.3")
		h.Set("X-AspNet-Version", "4.0.30319")
		h.Set("X-Internal-Db", "shard7.db.internal")
		h.Set("X-Public", "kept")
		h.Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/boom":
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "panic: runtime error: index out of range\ngoroutine 1 [running]:\nmain.handler()\n\t/srv/app/db.go:42\nERROR: SELECT password FROM users WHERE id=1")
		case r.URL.Path == "/orders" && r.Method == http.MethodGet:
			list := "[" + leakyOrderJSON + "," + leakyOrderJSON + "]"
			if r.URL.Query().Get("big") != "" {
				list = "[" + strings.Repeat(leakyOrderJSON+",", 40) + leakyOrderJSON + "]"
			}
			if r.URL.Query().Get("gz") != "" {
				// A backend that compresses whatever it was asked.
				var zb bytes.Buffer
				zw := gzip.NewWriter(&zb)
				io.WriteString(zw, list)
				zw.Close()
				h.Set("Content-Encoding", "gzip")
				w.Write(zb.Bytes())
				return
			}
			io.WriteString(w, list)
		case r.URL.Path == "/orders" && r.Method == http.MethodPost:
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, leakyOrderJSON)
		default:
			switch r.URL.Query().Get("label") {
			case "none":
				h["Content-Type"] = nil // no Content-Type, no sniffing
			case "text":
				h.Set("Content-Type", "text/plain; charset=utf-8")
			}
			if r.Header.Get("Range") != "" {
				// A backend honouring Range would send part of the document.
				h.Set("Content-Range", "bytes 0-39/*")
				w.WriteHeader(http.StatusPartialContent)
				io.WriteString(w, leakyOrderJSON[:40])
				return
			}
			io.WriteString(w, leakyOrderJSON)
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *leakyUpstream) received(path string) ([]byte, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bodies[path], u.acceptEnc[path]
}

func shopAPI(upstream, extra string) apiConfig {
	return apiConfig{Name: "shop", Version: "v1", Spec: "shop-v1.yaml", Upstream: upstream, BasePath: "/shop/v1", APIExtra: extra}
}

const shopHygiene = `    sensitivity: restricted
    validate: {mode: enforce, strict: true, max_depth: 8, max_body_bytes: 2048, operations: {updateOrder: {mode: report}}}
    response: {deny_fields: [ssn], strip_headers: ["X-Internal-*"], max_bytes: 4096}
`

type validationProblem struct {
	Type      string `json:"type"`
	Status    int    `json:"status"`
	RequestID string `json:"request_id"`
	Errors    []struct {
		Pointer string `json:"pointer"`
		Detail  string `json:"detail"`
	} `json:"errors"`
}

const okOrder = `{"customer_email":"ann@example.com","amount":12.5,"currency":"EUR","items":[{"sku":"ABC-1","qty":2}]}`

// TestRequestValidationEndToEnd: attacks are refused with 400/415 problems
// naming the pointer and never the value; benign twins reach the upstream
// with their bytes unchanged.
func TestRequestValidationEndToEnd(t *testing.T) {
	t.Parallel()
	up := newLeakyUpstream(t)
	g := startGateway(t, gwConfig{APIs: []apiConfig{shopAPI(up.srv.URL, shopHygiene)}})
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	rows := []struct {
		name, method, path string
		header             http.Header
		body               string
		status             int
		pointer            string
	}{
		{"benign create", "POST", "/shop/v1/orders", jsonCT, okOrder, 201, ""},
		{"mass assignment", "POST", "/shop/v1/orders", jsonCT, strings.Replace(okOrder, `{`, `{"role":"admin",`, 1), 400, "/body/role"},
		{"readOnly id", "POST", "/shop/v1/orders", jsonCT, strings.Replace(okOrder, `{`, `{"id":"mine",`, 1), 400, "/body/id"},
		{"duplicate key smuggling", "POST", "/shop/v1/orders", jsonCT, strings.Replace(okOrder, `"amount":12.5`, `"amount":12.5,"amount":-99999`, 1), 400, "/body/amount"},
		{"bad email secret value", "POST", "/shop/v1/orders", jsonCT, strings.Replace(okOrder, "ann@example.com", "SECRETVALUE", 1), 400, "/body/customer_email"},
		{"wrong content type", "POST", "/shop/v1/orders", http.Header{"Content-Type": {"text/plain"}}, okOrder, 415, ""},
		{"nested too deep", "POST", "/shop/v1/orders", jsonCT, `{"note":` + strings.Repeat("[", 12) + strings.Repeat("]", 12) + `}`, 400, ""},
		{"invalid utf-8", "POST", "/shop/v1/orders", jsonCT, strings.Replace(okOrder, "ann@", "a\xffn@", 1), 400, "/body/customer_email"},
		{"body too large", "POST", "/shop/v1/orders", jsonCT, `{"note":"` + strings.Repeat("x", 3000) + `"}`, 413, ""},
		{"path param not uuid", "GET", "/shop/v1/orders/1%27%20OR%201=1", nil, "", 400, "/path/orderId"},
		{"benign get", "GET", "/shop/v1/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", nil, "", 200, ""},
		{"query out of range", "GET", "/shop/v1/orders?limit=1000", nil, "", 400, "/query/limit"},
		{"benign query", "GET", "/shop/v1/orders?limit=10&status=open", nil, "", 200, ""},
		{"report mode passes", "PATCH", "/shop/v1/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", jsonCT, `{"note":5}`, 200, ""},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			resp, got := g.do(t, g.h2, tc.method, tc.path, reqOpts{header: tc.header, body: body})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
			}
			if tc.status >= 400 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q", ct)
				}
				if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
					t.Errorf("CSP %q on a problem", csp)
				}
				if strings.Contains(string(got), "SECRETVALUE") {
					t.Errorf("problem echoes the offending value: %s", got)
				}
			}
			if tc.pointer != "" {
				var p validationProblem
				if err := json.Unmarshal(got, &p); err != nil {
					t.Fatal(err)
				}
				if p.Type != gateway.ProblemBase+"validation" || p.RequestID == "" {
					t.Errorf("problem %+v", p)
				}
				found := false
				for _, e := range p.Errors {
					found = found || e.Pointer == tc.pointer
				}
				if !found {
					t.Errorf("errors %+v lack %s", p.Errors, tc.pointer)
				}
			}
			if tc.status < 300 && tc.body != "" {
				seen, _ := up.received(strings.TrimPrefix(strings.SplitN(tc.path, "?", 2)[0], "/shop/v1"))
				if string(seen) != tc.body {
					t.Errorf("upstream got %q, client sent %q", seen, tc.body)
				}
			}
		})
	}
	if !strings.Contains(g.logs.String(), "report mode") {
		t.Error("report-mode violation not logged")
	}
}

// TestResponseFilteringEndToEnd: only documented fields leave, deny-listed
// ones never, headers are scrubbed, 5xx bodies replaced.
func TestResponseFilteringEndToEnd(t *testing.T) {
	t.Parallel()
	up := newLeakyUpstream(t)
	g := startGateway(t, gwConfig{APIs: []apiConfig{shopAPI(up.srv.URL, shopHygiene)}})
	leaks := []string{"password_hash", "internal_notes", "cost_price", "ssn", "078-05-1120", "N9qo8"}

	one := "/shop/v1/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e"
	for _, path := range []string{one, "/shop/v1/orders", "/shop/v1/orders?gz=1", one + "?label=none", one + "?label=text", one + "?range"} {
		t.Run(path, func(t *testing.T) {
			var hdr http.Header
			if strings.HasSuffix(path, "?range") {
				// Range must not read around the filter.
				hdr = http.Header{"Range": {"bytes=0-39"}}
			}
			resp, body := g.do(t, g.h2, http.MethodGet, path, reqOpts{header: hdr})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			for _, l := range leaks {
				if bytes.Contains(body, []byte(l)) {
					t.Errorf("response leaks %q: %s", l, body)
				}
			}
			for _, keep := range []string{`"sku":"ABC-1"`, `"name":"Ann"`, `"k":"v"`, `"status":"open"`} {
				if !bytes.Contains(body, []byte(keep)) {
					t.Errorf("documented %s missing: %s", keep, body)
				}
			}
			if !json.Valid(body) {
				t.Errorf("invalid JSON: %s", body)
			}
			if cl := resp.Header.Get("Content-Length"); cl != "" && cl != itoa(len(body)) {
				t.Errorf("Content-Length %s for %d bytes", cl, len(body))
			}
			if enc := resp.Header.Get("Content-Encoding"); enc != "" {
				t.Errorf("Content-Encoding %q on a rewritten body", enc)
			}
			for _, h := range []string{"Server", "X-Powered-By", "X-Aspnet-Version", "X-Internal-Db"} {
				if v := resp.Header.Get(h); v != "" {
					t.Errorf("header %s: %q not scrubbed", h, v)
				}
			}
			if resp.Header.Get("X-Public") != "kept" {
				t.Error("an ordinary header was removed")
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
		})
	}
	if _, enc := up.received("/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e"); enc != "identity" {
		t.Errorf("filtered operation asked the upstream for encoding %q, want identity", enc)
	}
	if !strings.Contains(g.logs.String(), "/password_hash") {
		t.Error("dropped pointers not logged")
	}

	t.Run("upstream 5xx replaced", func(t *testing.T) {
		resp, body := g.get(t, g.h2, "/shop/v1/boom")
		p := assertProblem(t, resp, body, 500, "upstream-error")
		for _, l := range []string{"panic", "SELECT", "db.go", "goroutine"} {
			if bytes.Contains(body, []byte(l)) {
				t.Errorf("5xx body leaks %q", l)
			}
		}
		if resp.Header.Get("Server") != "" {
			t.Error("Server header on a replaced 5xx")
		}
		logs := g.logs.String()
		if !strings.Contains(logs, "upstream server error") || !strings.Contains(logs, "SELECT password") || !strings.Contains(logs, p.RequestID) {
			t.Error("original 5xx body not logged with the request ID")
		}
	})

	t.Run("oversize fails closed on a restricted API", func(t *testing.T) {
		resp, body := g.get(t, g.h2, "/shop/v1/orders?big=1")
		assertProblem(t, resp, body, 502, "response-unfilterable")
	})
}

// TestResponseFilterModesAndReload: report mode keeps fields and logs them;
// oversize pass lets a large body through; a reload switching to documented
// takes effect.
func TestResponseFilterModesAndReload(t *testing.T) {
	t.Parallel()
	up := newLeakyUpstream(t)
	cfg := gwConfig{APIs: []apiConfig{shopAPI(up.srv.URL, "    sensitivity: internal\n    response: {filter: report, max_bytes: 4096, oversize: pass}\n")}}
	g := startGateway(t, cfg)
	resp, body := g.get(t, g.h1, "/shop/v1/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e")
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("password_hash")) {
		t.Fatalf("report mode changed the body: %d %s", resp.StatusCode, body)
	}
	eventually(t, 2*time.Second, "report mode logs the undocumented fields", func() bool {
		return strings.Contains(g.logs.String(), "report mode, kept")
	})
	resp, body = g.get(t, g.h1, "/shop/v1/orders?big=1")
	if resp.StatusCode != 200 || len(body) < 4096 {
		t.Fatalf("oversize pass: %d, %d bytes", resp.StatusCode, len(body))
	}

	cfg.APIs[0] = shopAPI(up.srv.URL, "    sensitivity: confidential\n    validate: enforce\n")
	writeFileAtomic(t, g.cfgPath, cfg.render())
	if err := g.srv.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	resp, body = g.get(t, g.h1, "/shop/v1/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e")
	if resp.StatusCode != 200 || bytes.Contains(body, []byte("password_hash")) {
		t.Fatalf("after reload (confidential: documented by default): %d %s", resp.StatusCode, body)
	}
	if resp, _ := g.get(t, g.h1, "/shop/v1/orders?limit=0"); resp.StatusCode != 400 {
		t.Errorf("validation not enforced after reload: %d", resp.StatusCode)
	}
}

// TestSpecRejectedByValidatorIsConfigError: a spec that parses but breaks
// OpenAPI rules is refused when validation is on, naming the spec file.
func TestSpecRejectedByValidatorIsConfigError(t *testing.T) {
	t.Parallel()
	up := newEchoUpstream(t, "billing-backend")
	cfg := gwConfig{APIs: []apiConfig{billingAPI(up.URL())}}
	g := startGateway(t, cfg)
	cfg.APIs[0].APIExtra = "    validate: enforce\n"
	writeFileAtomic(t, g.cfgPath, cfg.render())
	err := g.srv.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "billing-v1.yaml") || !strings.Contains(err.Error(), "path parameters") {
		t.Fatalf("reload error %v does not name the spec and its problem", err)
	}
	if s := status(t, g, "/billing/v1/invoices"); s != 200 {
		t.Errorf("old config not serving: %d", s)
	}
	// A mistyped operationId in an override is an error, not a silent default.
	cfg.APIs[0].APIExtra = "    response: {operations: {getInvoce: {filter: off}}}\n"
	writeFileAtomic(t, g.cfgPath, cfg.render())
	if err := g.srv.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "getInvoce") {
		t.Fatalf("reload error %v does not name the unknown operation", err)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
