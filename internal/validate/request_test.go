package validate

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

type testParams [][2]string

func (p testParams) Len() int                  { return len(p) }
func (p testParams) At(i int) (string, string) { return p[i][0], p[i][1] }

var (
	fixtureOnce sync.Once
	fixtureDoc  *Document
)

func fixture(t testing.TB) *Document {
	t.Helper()
	fixtureOnce.Do(func() {
		d, err := LoadDocument("testdata/orders.yaml", nil)
		if err != nil {
			panic(err)
		}
		if d.Invalid != nil {
			panic(d.Invalid)
		}
		fixtureDoc = d
	})
	return fixtureDoc
}

func validator(t testing.TB, method, path string, strict bool) *Request {
	t.Helper()
	v, err := NewRequest(fixture(t), method, path, RequestOptions{Mode: Enforce, Strict: strict, MaxDepth: 8, MaxBodyBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const goodOrder = `{"customer_email":"ann@example.com","amount":12.5,"currency":"EUR","items":[{"sku":"ABC-1","qty":2}]}`

const orderID = "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e"

// TestRequestValidation: each attack row must be refused with the expected
// status and pointer; each benign twin must pass.
func TestRequestValidation(t *testing.T) {
	type row struct {
		name    string
		method  string
		op      string // spec path
		target  string
		params  testParams
		ct      string
		body    string
		header  map[string]string
		strict  bool
		status  int    // 0: must pass
		pointer string // expected among the violations
	}
	rows := []row{
		// path parameters: format uuid
		{name: "path uuid ok", method: "GET", op: "/orders/{orderId}", target: "/orders/" + orderID, params: testParams{{"orderId", orderID}}},
		{name: "path not a uuid (injection)", method: "GET", op: "/orders/{orderId}", target: "/orders/x", params: testParams{{"orderId", "1'%20OR%20'1'='1"}}, status: 400, pointer: "/path/orderId"},
		// query: integer range, enum, date-time, arrays
		{name: "query limit not integer", method: "GET", op: "/orders", target: "/orders?limit=ten", status: 400, pointer: "/query/limit"},
		{name: "query ok", method: "GET", op: "/orders", target: "/orders?limit=10&status=open&since=2026-01-02T03:04:05Z&tags=a&tags=b"},
		{name: "query limit above maximum", method: "GET", op: "/orders", target: "/orders?limit=100000", status: 400, pointer: "/query/limit"},
		{name: "query limit below minimum", method: "GET", op: "/orders", target: "/orders?limit=0", status: 400, pointer: "/query/limit"},
		{name: "query with ; separator (parser differential)", method: "GET", op: "/orders", target: "/orders?limit=1;DROP", status: 400, pointer: "/query"},
		{name: "query enum violated", method: "GET", op: "/orders", target: "/orders?status=all", status: 400, pointer: "/query/status"},
		{name: "query date-time malformed", method: "GET", op: "/orders", target: "/orders?since=yesterday", status: 400, pointer: "/query/since"},
		{name: "query array too many items", method: "GET", op: "/orders", target: "/orders?tags=a&tags=b&tags=c&tags=d", status: 400, pointer: "/query/tags"},
		{name: "query array item too long", method: "GET", op: "/orders", target: "/orders?tags=aaaaaaaaaaaaaaaaaaaaa", status: 400, pointer: "/query/tags/0"},
		// header pattern, cookie length
		{name: "header ok", method: "GET", op: "/orders", target: "/orders", header: map[string]string{"X-Trace-Id": "0123456789abcdef", "Cookie": "session=abcdefgh12"}},
		{name: "header pattern violated", method: "GET", op: "/orders", target: "/orders", header: map[string]string{"X-Trace-Id": "<script>"}, status: 400, pointer: "/header/X-Trace-Id"},
		{name: "cookie too short", method: "GET", op: "/orders", target: "/orders", header: map[string]string{"Cookie": "session=a"}, status: 400, pointer: "/cookie/session"},
		// JSON body: types, formats, ranges, enums, required, arrays, patterns
		{name: "body ok", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: goodOrder},
		{name: "body ok with charset", method: "POST", op: "/orders", target: "/orders", ct: "application/json; charset=utf-8", body: goodOrder},
		{name: "body bad email", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, "ann@example.com", "ann", 1), status: 400, pointer: "/body/customer_email"},
		{name: "body amount negative", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, "12.5", "-5", 1), status: 400, pointer: "/body/amount"},
		{name: "body amount is a string", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, "12.5", `"12.5"`, 1), status: 400, pointer: "/body/amount"},
		{name: "body currency not in enum", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, "EUR", "XBT", 1), status: 400, pointer: "/body/currency"},
		{name: "body missing required", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: `{"customer_email":"ann@example.com","amount":1,"items":[{"sku":"ABC-1","qty":1}]}`, status: 400, pointer: "/body/currency"},
		{name: "body sku pattern", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, "ABC-1", "../etc", 1), status: 400, pointer: "/body/items/0/sku"},
		{name: "body too many items", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, `{"sku":"ABC-1","qty":2}`, `{"sku":"ABC-1","qty":2},{"sku":"ABC-1","qty":2},{"sku":"ABC-1","qty":2},{"sku":"ABC-1","qty":2}`, 1), status: 400, pointer: "/body/items"},
		{name: "body empty items", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, `{"sku":"ABC-1","qty":2}`, ``, 1), status: 400, pointer: "/body/items"},
		{name: "body string too long", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, `"amount"`, `"note":"`+strings.Repeat("x", 21)+`","amount"`, 1), status: 400, pointer: "/body/note"},
		{name: "body missing entirely", method: "POST", op: "/orders", target: "/orders", ct: "application/json", status: 400, pointer: "/body"},
		// mass assignment
		{name: "mass assignment: additionalProperties false", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, `{"customer`, `{"is_admin":true,"customer`, 1), status: 400, pointer: "/body/is_admin"},
		{name: "mass assignment: readOnly id", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, `{"customer`, `{"id":"x","customer`, 1), status: 400, pointer: "/body/id"},
		{name: "nested unknown passes without strict", method: "PATCH", op: "/orders/{orderId}", target: "/orders/" + orderID, params: testParams{{"orderId", orderID}}, ct: "application/json", body: `{"address":{"street":"Main","role":"admin"}}`},
		{name: "nested unknown refused in strict", method: "PATCH", op: "/orders/{orderId}", target: "/orders/" + orderID, params: testParams{{"orderId", orderID}}, ct: "application/json", body: `{"address":{"street":"Main","role":"admin"}}`, strict: true, status: 400, pointer: "/body/address/role"},
		{name: "strict benign twin", method: "PATCH", op: "/orders/{orderId}", target: "/orders/" + orderID, params: testParams{{"orderId", orderID}}, ct: "application/json", body: `{"address":{"street":"Main","city":"Oslo"},"note":"hi"}`, strict: true},
		// content type
		{name: "content type not accepted", method: "POST", op: "/orders", target: "/orders", ct: "text/plain", body: goodOrder, status: 415},
		{name: "content type missing", method: "POST", op: "/orders", target: "/orders", body: goodOrder, status: 415},
		{name: "content type xml", method: "POST", op: "/orders", target: "/orders", ct: "application/xml", body: "<a/>", status: 415},
		{name: "body on an operation without one", method: "GET", op: "/orders", target: "/orders", ct: "application/json", body: `{}`, status: 415},
		// parser differentials and bounds
		{name: "duplicate key", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, `"currency":"EUR"`, `"currency":"EUR","currency":"XBT"`, 1), status: 400, pointer: "/body/currency"},
		{name: "duplicate key via escape", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, `"currency":"EUR"`, `"currency":"EUR","curr\u0065ncy":"XBT"`, 1), status: 400, pointer: "/body/currency"},
		{name: "duplicate key nested", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, `"qty":2`, `"qty":2,"qty":-1`, 1), status: 400, pointer: "/body/items/0/qty"},
		{name: "too deep", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: `{"a":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`, status: 400},
		{name: "invalid utf-8", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: strings.Replace(goodOrder, "ann@", "ann\xff@", 1), status: 400, pointer: "/body/customer_email"},
		{name: "malformed json", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: `{"customer_email":`, status: 400, pointer: "/body"},
		{name: "trailing garbage", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: goodOrder + `{}`, status: 400, pointer: "/body"},
		{name: "body too large", method: "POST", op: "/orders", target: "/orders", ct: "application/json", body: `{"note":"` + strings.Repeat("x", 5000) + `"}`, status: 413},
		// formats
		{name: "formats ok", method: "POST", op: "/hosts", target: "/hosts", ct: "application/json", body: `{"ip":"192.0.2.1","callback":"https://example.com/cb","contact":"a@b.example"}`},
		{name: "ipv4 malformed", method: "POST", op: "/hosts", target: "/hosts", ct: "application/json", body: `{"ip":"999.1.1.1"}`, status: 400, pointer: "/body/ip"},
		{name: "ipv6 where ipv4 expected", method: "POST", op: "/hosts", target: "/hosts", ct: "application/json", body: `{"ip":"::1"}`, status: 400, pointer: "/body/ip"},
		{name: "uri relative", method: "POST", op: "/hosts", target: "/hosts", ct: "application/json", body: `{"ip":"192.0.2.1","callback":"not a uri"}`, status: 400, pointer: "/body/callback"},
		{name: "email with display name", method: "POST", op: "/hosts", target: "/hosts", ct: "application/json", body: `{"ip":"192.0.2.1","contact":"Eve <eve@example.com>"}`, status: 400, pointer: "/body/contact"},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			v := validator(t, tc.method, tc.op, tc.strict)
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := httptest.NewRequest(tc.method, tc.target, body)
			if tc.ct != "" {
				r.Header.Set("Content-Type", tc.ct)
			}
			for k, val := range tc.header {
				r.Header.Set(k, val)
			}
			res := v.Check(r, tc.params)
			if res.Status != tc.status {
				t.Fatalf("status %d (%s), want %d; violations %+v", res.Status, res.Reason, tc.status, res.Violations)
			}
			if tc.pointer != "" {
				found := false
				for _, vi := range res.Violations {
					found = found || vi.Pointer == tc.pointer
				}
				if !found {
					t.Errorf("no violation at %s: %+v", tc.pointer, res.Violations)
				}
			}
			// Never echo the offending value.
			for _, vi := range res.Violations {
				for _, secret := range []string{"DROP", "script", "XBT", "999.1", "etc", "Eve", "admin"} {
					if strings.Contains(vi.Detail, secret) {
						t.Errorf("detail %q echoes the value", vi.Detail)
					}
				}
			}
			// The upstream gets exactly the client's bytes, pass or fail.
			if tc.status != 413 && r.Body != nil {
				got, _ := io.ReadAll(r.Body)
				if string(got) != tc.body {
					t.Errorf("body re-installed as %q, want %q", got, tc.body)
				}
			}
		})
	}
}

// TestOversizeBodyKeptIntact: report mode passes a body larger than the
// bound; it must still arrive whole.
func TestOversizeBodyKeptIntact(t *testing.T) {
	v := validator(t, "POST", "/orders", false)
	big := `{"note":"` + strings.Repeat("y", 9000) + `"}`
	r := httptest.NewRequest("POST", "/orders", io.NopCloser(bytes.NewReader([]byte(big))))
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/json")
	if res := v.Check(r, nil); res.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", res.Status)
	}
	got, _ := io.ReadAll(r.Body)
	if string(got) != big {
		t.Fatalf("body not intact (%d bytes, want %d)", len(got), len(big))
	}
}

func TestModeAndConfigWords(t *testing.T) {
	for in, want := range map[string]Mode{"enforce": Enforce, "documented": Enforce, "report": Report, "off": Off, "": Off} {
		if got := ParseMode(in); got != want {
			t.Errorf("ParseMode(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestOpenAPI31Document(t *testing.T) {
	d, err := LoadDocument("testdata/orders31.yaml", nil)
	if err != nil || d.Invalid != nil {
		t.Fatalf("load: %v %v", err, d.Invalid)
	}
	v, err := NewRequest(d, "POST", "/things", RequestOptions{Mode: Enforce})
	if err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]int{
		`{"name":"a","tag":null}`:   0,
		`{"name":"a","tag":"x"}`:    0,
		`{"name":"a","tag":5}`:      400,
		`{"name":"a","other":true}`: 400,
		// JSON Schema 2020-12 keywords, enforced for a 3.1 document.
		`{"name":"a","point":[1,2]}`:     0,
		`{"name":"a","point":[1,"x"]}`:   400,
		`{"name":"a","point":[1,2,3]}`:   400,
		`{"name":"a","kind":"widget"}`:   0,
		`{"name":"a","kind":"gadget"}`:   400,
		`{"name":"a","size":1}`:          0,
		`{"name":"a","size":0}`:          400,
		`{"name":"a","extra":{"a":"x"}}`: 0,
		`{"name":"a","extra":{"b":"x"}}`: 400,
		`{"name":"a","secret":"s"}`:      400,
	} {
		r := httptest.NewRequest("POST", "/things", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if res := v.Check(r, nil); res.Status != want {
			t.Errorf("%s: status %d, want %d (%+v)", body, res.Status, want, res.Violations)
		}
	}
}

func TestBrokenSpecReported(t *testing.T) {
	_, err := LoadDocument("testdata/broken.yaml", nil)
	var se *SpecError
	if err == nil {
		t.Fatal("broken spec loaded")
	}
	if !asSpecError(err, &se) || se.File != "testdata/broken.yaml" {
		t.Fatalf("error %v does not name the spec file", err)
	}
}

func asSpecError(err error, se **SpecError) bool {
	e, ok := err.(*SpecError)
	*se = e
	return ok
}
