package route

import (
	"errors"
	"testing"
)

const attackHost = "api.example.com"

// attackRoutes is one host with public order operations and two restricted
// operations an attacker wants to reach under a public name.
func attackRoutes() []Route {
	return []Route{
		{Host: attackHost, Method: "GET", Path: "/orders/v1/orders/{id}", Handler: "getOrder"},
		{Host: attackHost, Method: "GET", Path: "/orders/v1/orders", Handler: "listOrders"},
		{Host: attackHost, Method: "POST", Path: "/orders/v1/orders", Handler: "createOrder"},
		{Host: attackHost, Method: "GET", Path: "/orders/v1/orders/export", Handler: "exportOrders"}, // restricted
		{Host: attackHost, Method: "GET", Path: "/admin/v1/users", Handler: "listUsers"},             // restricted
	}
}

// gatewayRoute runs a request through Normalize and Match the way the
// gateway does and names the outcome: a handler, "400", "404" or "405".
// It also checks the one property all of this exists for: the route reached
// is exactly the route the normalised (forwarded) path names.
func gatewayRoute(t *testing.T, tab *Table, host, method, raw string) string {
	t.Helper()
	path, err := Normalize(raw, NormalizeOptions{})
	if err != nil {
		if !errors.Is(err, ErrBadPath) {
			t.Fatalf("Normalize(%q): %v does not match ErrBadPath", raw, err)
		}
		return "400"
	}
	var p Params
	res := tab.Match(host, method, path, &p)
	switch res.Status {
	case Found:
		if got := fillTemplate(res.Template, &p); got != path {
			t.Fatalf("reached %s for %q but its template filled with the params gives %q", res.Template, path, got)
		}
		return res.Handler.(string)
	case MethodNotAllowed:
		return "405"
	}
	return "404"
}

func TestAttackerPaths(t *testing.T) {
	tab := mustCompile(t, attackRoutes())
	cases := []struct {
		name, method, raw, want string
	}{
		// Benign twins.
		{"plain get", "GET", "/orders/v1/orders/123", "getOrder"},
		{"plain list", "GET", "/orders/v1/orders", "listOrders"},
		{"plain create", "POST", "/orders/v1/orders", "createOrder"},
		{"plain export", "GET", "/orders/v1/orders/export", "exportOrders"},
		{"plain admin", "GET", "/admin/v1/users", "listUsers"},

		// Traversal lands on what the path names: policy applies to it.
		{"dotdot to admin", "GET", "/orders/v1/orders/../../../admin/v1/users", "listUsers"},
		{"encoded dotdot to admin", "GET", "/orders/v1/orders/%2e%2e/%2E%2E/.%2e/admin/v1/users", "listUsers"},
		{"tomcat ..; to admin", "GET", "/orders/v1/orders/..;/..;/..;/admin/v1/users", "listUsers"},
		{"dotdot into a public id", "GET", "/orders/v1/orders/1/../2", "getOrder"},
		{"admin segment then climb back", "GET", "/admin/v1/users;/../../../orders/v1/orders/1", "getOrder"},
		{"matrix param then climb", "GET", "/orders/v1/orders/1;/../../admin", "404"},
		{"dotdot above root", "GET", "/../../../admin/v1/users", "listUsers"},
		{"slashes collapse", "GET", "//admin//v1///users", "listUsers"},
		{"dots inside", "GET", "/orders/v1/./orders/./7", "getOrder"},
		{"encoded letters", "GET", "/%61dmin/v1/%75sers", "listUsers"},
		{"matrix param on admin", "GET", "/admin;x=1/v1/users", "listUsers"},
		{"matrix param on id", "GET", "/orders/v1/orders/7;.json", "getOrder"},

		// Slash smuggling is refused outright.
		{"encoded slash traversal", "GET", "/orders/v1/orders/1%2F..%2F..%2Fadmin", "400"},
		{"encoded slash lower", "GET", "/admin%2fv1%2fusers", "400"},
		{"encoded backslash traversal", "GET", "/orders/v1/orders/%5c..%5cadmin", "400"},
		{"raw backslash traversal", "GET", "/orders/v1/orders\\..\\..\\..\\admin\\v1\\users", "400"},
		{"double encoded slash is data", "GET", "/orders/v1/orders/1%252F..%252F..%252Fadmin", "getOrder"},

		// Truncation and header injection.
		{"NUL suffix", "GET", "/admin/v1/users%00.json", "400"},
		{"NUL in id", "GET", "/orders/v1/orders/1%00", "400"},
		{"CRLF in id", "GET", "/orders/v1/orders/1%0d%0aX-Role:%20admin", "400"},
		{"overlong UTF-8 dots", "GET", "/orders/v1/orders/%C0%AE%C0%AE/%C0%AE%C0%AE/admin", "400"},
		{"malformed escape", "GET", "/orders/v1/orders/%zz", "400"},

		// Double decoding never produces a dot segment.
		{"double encoded dotdot is an id", "GET", "/orders/v1/orders/%252e%252e", "getOrder"},
		{"double encoded dotdot then more", "GET", "/orders/v1/orders/%252e%252e/admin", "404"},

		// Names that a lenient backend would read as the restricted literal.
		{"export upper-case", "GET", "/orders/v1/orders/EXPORT", "404"},
		{"export mixed case", "GET", "/orders/v1/orders/Export", "404"},
		{"export with encoded semicolon", "GET", "/orders/v1/orders/export%3Bx", "404"},
		{"export with raw semicolon", "GET", "/orders/v1/orders/export;x", "exportOrders"},
		{"export with encoded letter", "GET", "/orders/v1/orders/exp%6Frt", "exportOrders"},
		{"export longer is an id", "GET", "/orders/v1/orders/exports", "getOrder"},

		// Case, trailing slash and dot segments are distinct paths.
		{"upper-case API", "GET", "/ADMIN/v1/users", "404"},
		{"upper-case resource", "GET", "/admin/v1/Users", "404"},
		{"trailing slash on admin", "GET", "/admin/v1/users/", "404"},
		{"trailing slash on id", "GET", "/orders/v1/orders/1/", "404"},
		{"empty id", "GET", "/orders/v1/orders/", "404"},
		{"dot id", "GET", "/orders/v1/orders/.", "404"},
		{"encoded dot id", "GET", "/orders/v1/orders/%2e", "404"},
		{"dotdot id", "GET", "/orders/v1/orders/..", "404"},
		{"space suffix", "GET", "/admin/v1/users%20", "404"},

		// Methods.
		{"delete order", "DELETE", "/orders/v1/orders/1", "405"},
		{"head order", "HEAD", "/orders/v1/orders/1", "getOrder"},
		{"put admin", "PUT", "/admin/v1/users", "405"},
		{"lower-case method", "get", "/admin/v1/users", "405"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := gatewayRoute(t, tab, attackHost, tc.method, tc.raw); got != tc.want {
				t.Fatalf("%s %s reached %s, want %s", tc.method, tc.raw, got, tc.want)
			}
		})
	}
}

func TestAttackerHosts(t *testing.T) {
	tab := mustCompile(t, attackRoutes())
	cases := []struct{ host, want string }{
		{attackHost, "listUsers"},
		{"API.EXAMPLE.COM", "listUsers"},
		{"api.example.com:443", "listUsers"},
		{"api.example.com.", "listUsers"},
		{"Api.Example.Com.:8443", "listUsers"},
		{"evil.example.com", "404"}, // default table is empty
		{"api.example.com.evil", "404"},
		{"", "404"},
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			if got := gatewayRoute(t, tab, tc.host, "GET", "/admin/v1/users"); got != tc.want {
				t.Fatalf("host %q reached %s, want %s", tc.host, got, tc.want)
			}
		})
	}
}
