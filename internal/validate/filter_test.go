package validate

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestScanJSON(t *testing.T) {
	rows := []struct {
		name, doc string
		want      error
		pointer   string
	}{
		{"object", `{"a":1,"b":[true,false,null,"x",-1.5e3]}`, nil, ""},
		{"duplicate key", `{"a":1,"a":2}`, ErrDuplicateKey, "/a"},
		{"duplicate via unicode escape", `{"a":1,"\u0061":2}`, ErrDuplicateKey, "/a"},
		{"same key in sibling objects", `[{"a":1},{"a":2}]`, nil, ""},
		{"same key at two levels", `{"a":{"a":1}}`, nil, ""},
		{"nested duplicate", `{"x":[{"k":1,"k":1}]}`, ErrDuplicateKey, "/x/0/k"},
		{"depth at limit", strings.Repeat("[", 4) + strings.Repeat("]", 4), nil, ""},
		{"depth over limit", strings.Repeat("[", 5) + strings.Repeat("]", 5), ErrTooDeep, "/0/0/0/0"},
		{"invalid utf-8 in string", "{\"a\":\"\xc3\x28\"}", ErrInvalidUTF8, "/a"},
		{"overlong utf-8", "\"\xc0\xaf\"", ErrInvalidUTF8, ""},
		{"utf-8 surrogate half", "\"\xed\xa0\x80\"", ErrInvalidUTF8, ""},
		{"valid multibyte", `{"name":"Zoë 日本"}`, nil, ""},
		{"control char", "\"a\x01\"", ErrSyntax, ""},
		{"bad escape", `"\x"`, ErrSyntax, ""},
		{"trailing comma", `{"a":1,}`, ErrSyntax, ""},
		{"leading zero", `01`, ErrSyntax, ""},
		{"two values", `{} {}`, ErrSyntax, ""},
		{"empty", ``, ErrSyntax, ""},
		{"NaN", `NaN`, ErrSyntax, ""},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			err := ScanJSON([]byte(tc.doc), 4)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				if !json.Valid([]byte(tc.doc)) {
					t.Fatal("fixture is not valid JSON")
				}
				return
			}
			se, ok := err.(*ScanError)
			if !ok || se.Err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.pointer != "" && se.Pointer != tc.pointer {
				t.Errorf("pointer %q, want %q", se.Pointer, tc.pointer)
			}
		})
	}
}

func responseFilter(t testing.TB, method, path string, mode Mode, deny ...string) *ResponseFilter {
	t.Helper()
	f := NewResponseFilter(fixture(t), method, path, mode, NewDenyList(deny))
	if f == nil {
		t.Fatal("no filter")
	}
	return f
}

const leakyOrder = `{
  "id": "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", "status": "open",
  "password_hash": "$2b$10$abcdefghijklmnopqrstuv",
  "internal_notes": "customer is VIP; DB shard 7",
  "items": [{"sku": "ABC-1", "qty": 1, "cost_price": 3.2}, {"sku": "ABC-2", "qty": 2, "supplier": {"name": "x"}}],
  "customer": {"name": "Ann", "email": "ann@example.com", "ssn": "078-05-1120"},
  "payment": {"card_last4": "4242", "card_number": "4242424242424242", "iban_last4": "1234"},
  "metadata": {"anything": {"goes": true}},
  "attributes": {"color": {"value": "red", "secret": "s"}},
  "parent": {"id": "p", "debug": {"trace": 1}, "parent": {"status": "x", "db_id": 9}}
}`

func TestResponseFilterDocumented(t *testing.T) {
	f := responseFilter(t, "GET", "/orders/{orderId}", Enforce)
	out, o, err := f.Filter(nil, []byte(leakyOrder), 200, "application/json", true)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("filtered output is not JSON: %v\n%s", err, out)
	}
	want := map[string]any{
		"id": "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", "status": "open",
		"items":      []any{map[string]any{"sku": "ABC-1", "qty": 1.0}, map[string]any{"sku": "ABC-2", "qty": 2.0}},
		"customer":   map[string]any{"name": "Ann", "email": "ann@example.com"},
		"payment":    map[string]any{"card_last4": "4242", "iban_last4": "1234"},
		"metadata":   map[string]any{"anything": map[string]any{"goes": true}},
		"attributes": map[string]any{"color": map[string]any{"value": "red"}},
		"parent":     map[string]any{"id": "p", "parent": map[string]any{"status": "x"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("filtered:\n%s\nwant:\n%v", out, want)
	}
	for _, p := range []string{"/password_hash", "/internal_notes", "/items/0/cost_price", "/items/1/supplier", "/customer/ssn", "/payment/card_number", "/attributes/color/secret", "/parent/debug", "/parent/parent/db_id"} {
		if !contains(o.Dropped, p) {
			t.Errorf("dropped %v lacks %s", o.Dropped, p)
		}
	}
	if !o.Changed {
		t.Error("Changed not set")
	}
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// TestResponseFilterRows: attack rows (leaks that must go) and benign twins
// (documented data that must stay byte-for-byte in meaning).
func TestResponseFilterRows(t *testing.T) {
	rows := []struct {
		name, method, path string
		mode               Mode
		deny               []string
		status             int
		ct, in, want       string
	}{
		{"array of objects", "GET", "/orders", Enforce, nil, 200, "application/json", `[{"id":"a","password_hash":"h"},{"status":"s","internal_notes":"n"}]`, `[{"id":"a"},{"status":"s"}]`},
		{"benign array", "GET", "/orders", Enforce, nil, 200, "application/json", `[{"id":"a","status":"s"}]`, `[{"id":"a","status":"s"}]`},
		{"undocumented status drops everything", "GET", "/orders", Enforce, nil, 418, "application/json", `{"debug":"stack"}`, `{}`},
		{"documented problem status", "GET", "/orders/{orderId}", Enforce, nil, 404, "application/problem+json", `{"title":"Not found","status":404,"sql":"SELECT"}`, `{"title":"Not found","status":404}`},
		{"report mode keeps", "GET", "/orders", Report, nil, 200, "application/json", `[{"id":"a","password_hash":"h"}]`, `[{"id":"a","password_hash":"h"}]`},
		{"deny name at any depth", "GET", "/orders", Enforce, []string{"sku"}, 200, "application/json", `[{"items":[{"sku":"A","qty":1}]}]`, `[{"items":[{"qty":1}]}]`},
		{"deny applies in report mode", "GET", "/orders", Report, []string{"password_hash"}, 200, "application/json", `[{"id":"a","password_hash":"h"}]`, `[{"id":"a"}]`},
		{"deny applies with filter off", "GET", "/orders", Off, []string{"password_hash"}, 200, "application/json", `[{"id":"a","password_hash":"h","x":1}]`, `[{"id":"a","x":1}]`},
		{"deny path with wildcard", "GET", "/orders", Enforce, []string{"/*/customer/email"}, 200, "application/json", `[{"customer":{"name":"n","email":"e"}}]`, `[{"customer":{"name":"n"}}]`},
		{"deny path benign twin", "GET", "/orders", Enforce, []string{"/*/customer/email"}, 200, "application/json", `[{"status":"email"}]`, `[{"status":"email"}]`},
		{"deny in open metadata", "GET", "/orders", Enforce, []string{"token"}, 200, "application/json", `[{"metadata":{"token":"t","k":1}}]`, `[{"metadata":{"k":1}}]`},
		{"escaped key still dropped", "GET", "/orders", Enforce, nil, 200, "application/json", `[{"id":"a","p\u0061ssword_hash":"h"}]`, `[{"id":"a"}]`},
		{"escaped documented key kept", "GET", "/orders", Enforce, nil, 200, "application/json", `[{"st\u0061tus":"s"}]`, `[{"st\u0061tus":"s"}]`},
		{"scalar top level", "GET", "/orders", Enforce, nil, 200, "application/json", `"x"`, `"x"`},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			f := responseFilter(t, tc.method, tc.path, tc.mode, tc.deny...)
			out, _, err := f.Filter(nil, []byte(tc.in), tc.status, tc.ct, true)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("got %s, want %s", out, tc.want)
			}
		})
	}
}

func TestResponseFilterRefusesBrokenJSON(t *testing.T) {
	f := responseFilter(t, "GET", "/orders", Enforce)
	for _, in := range []string{`[{"id":`, `[{"id":"a"}]x`, "[\"\xff\"]", `{"a":1,"a":2`, strings.Repeat("[", 300) + strings.Repeat("]", 300)} {
		if _, _, err := f.Filter(nil, []byte(in), 200, "application/json", true); err == nil {
			t.Errorf("%q: filtered without error", in)
		}
	}
}

func TestNoFilterWithoutSchemasOrDeny(t *testing.T) {
	if f := NewResponseFilter(fixture(t), "PATCH", "/orders/{orderId}", Enforce, nil); f != nil {
		t.Error("an operation documenting no response schema got a filter")
	}
	if f := NewResponseFilter(fixture(t), "GET", "/orders", Off, nil); f != nil {
		t.Error("filter off without a deny list got a filter")
	}
}
