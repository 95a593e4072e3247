package registry

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	s, err := LoadSpec("../../examples/quickstart/specs/orders-v1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != "3.1.0" || len(s.Operations) != 5 {
		t.Fatalf("got version %q, %d operations", s.Version, len(s.Operations))
	}
	want := map[string]string{"listOrders": "GET /orders", "createOrder": "POST /orders", "getOrder": "GET /orders/{orderId}",
		"cancelOrder": "DELETE /orders/{orderId}", "listCustomerOrders": "GET /customers/{customerId}/orders"}
	for _, o := range s.Operations {
		if want[o.ID] != o.Method+" "+o.Path {
			t.Errorf("operation %s = %s %s", o.ID, o.Method, o.Path)
		}
		if o.Line == 0 {
			t.Errorf("operation %s has no line", o.ID)
		}
	}
	if len(s.Digest) != 64 {
		t.Errorf("digest %q", s.Digest)
	}
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty", "", "s.yaml: OpenAPI spec is empty"},
		{"swagger 2", "swagger: '2.0'\npaths: {}\n", "s.yaml:1: missing openapi"},
		{"openapi 4", "openapi: 4.0.0\npaths: {}\n", "s.yaml:1: unsupported openapi version \"4.0.0\""},
		{"no paths", "openapi: 3.0.3\n", "missing paths"},
		{"yaml error", "openapi: 3.0.3\npaths: [\n", "s.yaml:2: invalid YAML/JSON"},
		{"path without slash", "openapi: 3.0.3\npaths:\n  orders: {get: {operationId: a}}\n", "s.yaml:3: path \"orders\" must start with /"},
		{"no operationId", "openapi: 3.0.3\npaths:\n  /a:\n    get: {}\n", "s.yaml:4: operation GET /a has no operationId"},
		{"duplicate operationId", "openapi: 3.0.3\npaths:\n  /a:\n    get: {operationId: x}\n  /b:\n    get: {operationId: x}\n", "s.yaml:6: operationId \"x\" is already used at line 4"},
		{"unknown method", "openapi: 3.0.3\npaths:\n  /a:\n    fetch: {operationId: x}\n", "s.yaml:4: unknown key \"fetch\""},
		{"upper-case method", "openapi: 3.0.3\npaths:\n  /a:\n    GET: {operationId: x}\n", "unknown key \"GET\""},
		{"path ref", "openapi: 3.0.3\npaths:\n  /a:\n    $ref: '#/x'\n", "path item $ref is not supported"},
		{"alias bomb", "openapi: 3.0.3\nx: &a [1]\npaths:\n  /a: *a\n", "must be a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec("s.yaml", []byte(tc.doc))
			var se SpecErrors
			if !errors.As(err, &se) {
				t.Fatalf("want SpecErrors, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q in %q", tc.want, err)
			}
		})
	}
}

func TestParseSpecJSONAndAllMethods(t *testing.T) {
	doc := `{"openapi":"3.0.3","paths":{"/x":{"parameters":[],"x-ext":1,"get":{"operationId":"g"},"put":{"operationId":"p"},"post":{"operationId":"po"},"delete":{"operationId":"d"},"options":{"operationId":"o"},"head":{"operationId":"h"},"patch":{"operationId":"pa"},"trace":{"operationId":"t"}}}}`
	s, err := ParseSpec("s.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Operations) != 8 {
		t.Fatalf("got %d operations", len(s.Operations))
	}
}

func FuzzParseSpec(f *testing.F) {
	b, err := os.ReadFile("../../examples/quickstart/specs/orders-v1.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"openapi":"3.0.3","paths":{"/x":{"get":{"operationId":"g"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec("f.yaml", data)
		if err != nil {
			var se SpecErrors
			if !errors.As(err, &se) || len(se) == 0 {
				t.Fatalf("error is not SpecErrors: %v", err)
			}
			return
		}
		ids := map[string]bool{}
		for _, o := range s.Operations {
			if o.ID == "" || ids[o.ID] || !strings.HasPrefix(o.Path, "/") {
				t.Fatalf("bad operation %+v", o)
			}
			ids[o.ID] = true
		}
	})
}
