package route

import (
	"fmt"
	"testing"
)

var (
	sinkString string
	sinkResult Result
)

func BenchmarkNormalize(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"clean", "/orders/v1/orders/12345"},
		{"clean-escaped", "/files/v1/files/caf%C3%A9%20menu"},
		{"dirty", "/orders//v1/./orders/%7Eu/../12345;jsessionid=abc"},
		{"traversal", "/orders/v1/orders/%2e%2e/%2E%2E/..;/admin/v1/users"},
		{"refused", "/orders/v1/orders/1%2F..%2F..%2Fadmin"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkString, _ = Normalize(bc.path, NormalizeOptions{})
			}
		})
	}
}

var benchAPIs = []string{
	"orders", "payments", "customers", "invoices", "shipments", "products", "inventory", "carts",
	"refunds", "accounts", "users", "sessions", "reports", "webhooks", "documents", "contracts",
	"partners", "pricing", "catalog", "notifications",
}

// benchRoutes is a realistic 200-route table: 20 APIs with 10 operations
// each, split over two hosts, mixing literals and parameters.
func benchRoutes() []Route {
	ops := []struct{ method, path string }{
		{"GET", "/items"},
		{"POST", "/items"},
		{"GET", "/items/search"},
		{"GET", "/items/{id}"},
		{"PUT", "/items/{id}"},
		{"DELETE", "/items/{id}"},
		{"GET", "/items/{id}/history"},
		{"POST", "/items/{id}/actions/cancel"},
		{"GET", "/items/{id}/lines/{lineId}"},
		{"GET", "/health"},
	}
	var routes []Route
	for i, api := range benchAPIs {
		host := "api.example.com"
		if i%2 == 1 {
			host = "partners.example.com"
		}
		for _, op := range ops {
			path := fmt.Sprintf("/%s/v1%s", api, op.path)
			routes = append(routes, Route{Host: host, Method: op.method, Path: path, Handler: op.method + " " + path})
		}
	}
	return routes
}

func BenchmarkMatch200(b *testing.B) {
	tab := mustCompile(b, benchRoutes())
	for _, bc := range []struct {
		name, host, method, path string
		want                     Status
	}{
		{"hit-literal", "api.example.com", "GET", "/orders/v1/items/search", Found},
		{"hit-param", "api.example.com", "GET", "/orders/v1/items/12345", Found},
		{"hit-2params", "partners.example.com:8443", "GET", "/notifications/v1/items/12345/lines/7", Found},
		{"404", "api.example.com", "GET", "/orders/v1/nothing/here", NotFound},
		{"404-unknown-host", "unknown.example.com", "GET", "/orders/v1/items", NotFound},
		{"405", "api.example.com", "PATCH", "/orders/v1/items/12345", MethodNotAllowed},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p Params
			if res := tab.Match(bc.host, bc.method, bc.path, &p); res.Status != bc.want {
				b.Fatalf("status %v, want %v", res.Status, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				sinkResult = tab.Match(bc.host, bc.method, bc.path, &p)
			}
		})
	}
}

// BenchmarkRoute is the whole route stage for a clean request: Normalize
// then Match.
func BenchmarkRoute(b *testing.B) {
	tab := mustCompile(b, benchRoutes())
	var p Params
	b.ReportAllocs()
	for b.Loop() {
		path, err := Normalize("/orders/v1/items/12345/lines/7", NormalizeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		sinkResult = tab.Match("api.example.com", "GET", path, &p)
	}
}
