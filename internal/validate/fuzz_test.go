package validate

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// FuzzScanJSON: whatever the scanner accepts, encoding/json accepts too
// (so the gateway never passes a body its own parser would reject).
func FuzzScanJSON(f *testing.F) {
	for _, s := range []string{goodOrder, `{"a":1,"a":2}`, `{"\u0061":1,"a":2}`, `[[[[[]]]]]`, "\"\xff\"", `{"a":[1,2,{"b":null}]}`, `-0.5e+3`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := ScanJSON(data, 16)
		if err == nil {
			if !json.Valid(data) {
				t.Fatalf("scanner accepted invalid JSON %q", data)
			}
			if !utf8.Valid(data) {
				t.Fatalf("scanner accepted invalid UTF-8 %q", data)
			}
			// The fast decoder agrees with encoding/json on what it accepts.
			var want any
			werr := json.Unmarshal(data, &want)
			got, gerr := decodeJSON(data)
			if (werr == nil) != (gerr == nil) || (werr == nil && !reflect.DeepEqual(got, want)) {
				t.Fatalf("decodeJSON(%q) = %#v, %v; encoding/json: %#v, %v", data, got, gerr, want, werr)
			}
		}
	})
}

// FuzzFilter: the filter's output is always valid JSON, and never longer
// than its input plus nothing (it only removes).
func FuzzFilter(f *testing.F) {
	for _, s := range []string{leakyOrder, `[{"id":"a","password_hash":"h"}]`, `{}`, `[]`, `"x"`, `[{"customer":{"email":"e","x":1}}]`} {
		f.Add([]byte(s))
	}
	filter := NewResponseFilter(fixture(f), "GET", "/orders/{orderId}", Enforce, NewDenyList([]string{"password_hash", "/parent/*"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := filter.Filter(nil, data, 200, "application/json", true)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("filter produced invalid JSON %q from %q", out, data)
		}
		if strings.Contains(string(out), `"password_hash"`) {
			t.Fatalf("denied field left in %q", out)
		}
	})
}

// FuzzRequestCheck drives the validator entry point with hostile queries,
// headers and bodies: no panic, and the body always reaches the upstream
// unchanged.
func FuzzRequestCheck(f *testing.F) {
	f.Add("limit=5&status=open", "application/json", goodOrder, "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e")
	f.Add("tags=a&tags=b", "application/json; charset=utf-8", `{"customer_email":1}`, "x")
	f.Add("limit=1;x", "text/plain", "\xff", "%zz")
	post := validator(f, "POST", "/orders", true)
	get := validator(f, "GET", "/orders", true)
	patch := validator(f, "PATCH", "/orders/{orderId}", true)
	f.Fuzz(func(t *testing.T, query, ct, body, id string) {
		for _, v := range []*Request{post, get, patch} {
			r := httptest.NewRequest("POST", "/orders", strings.NewReader(body))
			r.URL.RawQuery = query
			r.Header.Set("Content-Type", ct)
			r.Header.Set("X-Trace-Id", query)
			res := v.Check(r, testParams{{"orderId", url.PathEscape(id)}})
			if res.Status != 0 && res.Status != 400 && res.Status != 413 && res.Status != 415 {
				t.Fatalf("status %d", res.Status)
			}
			if res.Status != 413 {
				got, _ := io.ReadAll(r.Body)
				if string(got) != body {
					t.Fatalf("body changed: %q -> %q", body, got)
				}
			}
			for _, vi := range res.Violations {
				if len(body) > 12 && strings.Contains(vi.Detail, body) {
					t.Fatalf("detail echoes the body: %q", vi.Detail)
				}
			}
		}
	})
}

// FuzzFastParamAgreesWithKin: the fast path may only accept what
// kin-openapi accepts too (it never refuses on its own).
func FuzzFastParamAgreesWithKin(f *testing.F) {
	for _, s := range []string{"10", "0", "100", "101", "-1", "1e2", "open", "all", "0123456789abcdef", "2026-01-02T03:04:05Z", "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", " 5", "+5", "0x10"} {
		f.Add(s)
	}
	get := validator(f, "GET", "/orders", false)
	byID := validator(f, "GET", "/orders/{orderId}", false)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, val string) {
		for _, v := range []*Request{get, byID} {
			for i, p := range v.params {
				fp := v.fastP[i]
				if fp == nil || !fp.accepts(val) {
					continue
				}
				r := httptest.NewRequest("GET", "/orders", nil)
				q := url.Values{}
				path := map[string]string{}
				switch p.In {
				case "query":
					q.Set(p.Name, val)
				case "header":
					r.Header.Set(p.Name, val)
					if r.Header.Get(p.Name) != val {
						continue // not representable as a header
					}
				case "path":
					path[p.Name] = val
				}
				r.URL.RawQuery = q.Encode()
				in := &openapi3filter.RequestValidationInput{Request: r, PathParams: path, QueryParams: q, Route: v.route, Options: v.kinOpts}
				if err := openapi3filter.ValidateParameter(ctx, in, p); err != nil {
					t.Fatalf("fast path accepted %s %s=%q, kin-openapi refuses: %v", p.In, p.Name, val, err)
				}
			}
		}
	})
}
