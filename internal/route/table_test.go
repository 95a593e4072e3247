package route

import (
	"errors"
	"strings"
	"testing"
)

func mustCompile(t testing.TB, routes []Route) *Table {
	t.Helper()
	tab, err := Compile(routes)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tab
}

// rt is a route whose Handler is its own label, so tests can say which
// route a request reached.
func rt(host, method, path string) Route {
	return Route{Host: host, Method: method, Path: path, Handler: method + " " + host + path}
}

// fillTemplate substitutes the matched parameters into a template: for a
// correct match it gives back the path that was matched.
func fillTemplate(template string, p *Params) string {
	var b strings.Builder
	k := 0
	for i, seg := range strings.Split(template, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && k < p.Len() {
			_, v := p.At(k)
			b.WriteString(v)
			k++
			continue
		}
		b.WriteString(seg)
	}
	return b.String()
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name   string
		routes []Route
		is     error
		want   []string // substrings the joined error must contain
	}{
		{"empty template", []Route{rt("", "GET", "")}, ErrInvalidRoute, []string{"empty path template"}},
		{"relative template", []Route{rt("", "GET", "a/b")}, ErrInvalidRoute, []string{"must start with /"}},
		{"unbalanced open", []Route{rt("", "GET", "/a/{x")}, ErrInvalidRoute, []string{"unbalanced braces", `"{x"`}},
		{"unbalanced close", []Route{rt("", "GET", "/a/x}")}, ErrInvalidRoute, []string{"unbalanced braces"}},
		{"nested", []Route{rt("", "GET", "/a/{{x}}")}, ErrInvalidRoute, []string{"unbalanced braces"}},
		{"empty name", []Route{rt("", "GET", "/a/{}")}, ErrInvalidRoute, []string{"empty parameter name"}},
		{"partial segment", []Route{rt("", "GET", "/a/x{y}")}, ErrInvalidRoute, []string{"partial-segment", "unsupported", "/a/x{y}"}},
		{"partial segment suffix", []Route{rt("", "GET", "/a/{id}.json")}, ErrInvalidRoute, []string{"unsupported"}},
		{"two params one segment", []Route{rt("", "GET", "/a/{x}{y}")}, ErrInvalidRoute, []string{"unsupported"}},
		{"duplicate name", []Route{rt("", "GET", "/a/{id}/b/{id}")}, ErrInvalidRoute, []string{`duplicate parameter name "id"`}},
		{"double slash", []Route{rt("", "GET", "/a//b")}, ErrInvalidRoute, []string{"//"}},
		{"dot segment", []Route{rt("", "GET", "/a/./b")}, ErrInvalidRoute, []string{`dot segment "."`}},
		{"dotdot segment", []Route{rt("", "GET", "/a/../b")}, ErrInvalidRoute, []string{`dot segment ".."`}},
		{"matrix param", []Route{rt("", "GET", "/a;x/b")}, ErrInvalidRoute, []string{"not canonical"}},
		{"encoded unreserved", []Route{rt("", "GET", "/%61")}, ErrInvalidRoute, []string{"not canonical", `"a"`}},
		{"lower-case hex", []Route{rt("", "GET", "/a%3ab")}, ErrInvalidRoute, []string{"not canonical"}},
		{"encoded slash", []Route{rt("", "GET", "/a%2Fb")}, ErrInvalidRoute, []string{"encoded slash"}},
		{"backslash", []Route{rt("", "GET", "/a\\b")}, ErrInvalidRoute, []string{"backslash"}},
		{"too many params", []Route{rt("", "GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}")}, ErrInvalidRoute, []string{"9 parameters, at most 8"}},
		{"lower-case method", []Route{rt("", "get", "/a")}, ErrInvalidRoute, []string{`method "get"`}},
		{"empty method", []Route{rt("", "", "/a")}, ErrInvalidRoute, []string{`method ""`}},
		{"method with space", []Route{rt("", "GE T", "/a")}, ErrInvalidRoute, []string{`method "GE T"`}},
		{"host with port", []Route{rt("api.example.com:8443", "GET", "/a")}, ErrInvalidRoute, []string{"must not include a port"}},
		{"bracketed host with port", []Route{rt("[::1]:8443", "GET", "/a")}, ErrInvalidRoute, []string{"must not include a port"}},
		{"host with path", []Route{rt("api.example.com/x", "GET", "/a")}, ErrInvalidRoute, []string{"only letters"}},
		{"same shape", []Route{rt("", "GET", "/a/{x}"), rt("", "GET", "/a/{y}")}, ErrAmbiguousRoute,
			[]string{"ambiguous routes", "route 1 (GET (default host) /a/{y})", "same shape as route 0 (GET (default host) /a/{x})"}},
		{"same shape across host case", []Route{rt("API.example.com", "GET", "/a"), rt("api.EXAMPLE.com.", "GET", "/a")}, ErrAmbiguousRoute, []string{"same shape"}},
		{"percent variant literals", []Route{rt("", "GET", "/v1/items:x"), rt("", "POST", "/v1/items%3Ax")}, ErrAmbiguousRoute,
			[]string{"ambiguous routes", "items%3Ax", "items:x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab, err := Compile(tc.routes)
			if err == nil {
				t.Fatalf("Compile succeeded (%v), want error", tab)
			}
			if !errors.Is(err, tc.is) {
				t.Fatalf("error %v does not match %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestCompileReportsEveryProblem(t *testing.T) {
	_, err := Compile([]Route{
		rt("", "GET", "/ok/{id}"),
		rt("", "get", "/a/x{y}"), // two problems in one route
		rt("", "GET", "/b//c"),
		rt("", "GET", "/ok/{other}"),
		rt("h:1", "GET", "/d"),
	})
	if err == nil {
		t.Fatal("Compile succeeded")
	}
	var n int
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("got %d problems, want 5:\n%v", n, err)
	}
	for _, w := range []string{"route 1", "x{y}", "route 2", "route 3", "route 4", "ambiguous"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
}

func TestCompileAccepts(t *testing.T) {
	mustCompile(t, []Route{
		rt("", "GET", "/"),
		rt("", "GET", "/a/"),
		rt("", "GET", "/a"),
		rt("", "M-SEARCH", "/a"),
		rt("[::1]", "GET", "/a"),
		rt("::1", "POST", "/a"),
		rt("API.Example.COM.", "GET", "/a"),
		rt("", "GET", "/v1/items:batchGet"),
		rt("", "GET", "/files/caf%C3%A9"),
		rt("", "GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}"),
		rt("", "GET", "/users/{user-id}/x"),
		rt("", "GET", "/Users"), // case differs from /users: distinct paths
		rt("", "GET", "/users"),
	})
}

func TestMatch(t *testing.T) {
	tab := mustCompile(t, []Route{
		rt("", "GET", "/"),
		rt("", "GET", "/a/b/d"),
		rt("", "GET", "/a/{x}/c"),
		rt("", "GET", "/a/{x}"),
		rt("", "GET", "/orders"),
		rt("", "POST", "/orders"),
		rt("", "GET", "/orders/"),
		rt("", "PUT", "/orders/{id}"),
		rt("", "HEAD", "/orders/{id}"),
		rt("", "GET", "/orders/{id}"),
		rt("", "GET", "/orders/{id}/lines/{line}"),
		rt("", "GET", "/files/{name}"),
		rt("", "GET", "/v1/items:batchGet"),
		rt("api.example.com", "GET", "/only-here"),
		rt("::1", "GET", "/v6"),
	})
	type param struct{ name, value string }
	cases := []struct {
		host, method, path string
		status             Status
		handler            string
		allow              string
		params             []param
	}{
		{"", "GET", "/", Found, "GET /", "GET, HEAD", nil},
		{"", "GET", "/a/b/d", Found, "GET /a/b/d", "GET, HEAD", nil},
		{"", "GET", "/a/b/c", Found, "GET /a/{x}/c", "GET, HEAD", []param{{"x", "b"}}},
		{"", "GET", "/a/b", Found, "GET /a/{x}", "GET, HEAD", []param{{"x", "b"}}},
		{"", "GET", "/a/b/e", NotFound, "", "", nil},
		{"", "GET", "/a", NotFound, "", "", nil},
		{"", "GET", "/a/", NotFound, "", "", nil}, // a param never matches an empty segment
		{"", "GET", "/orders", Found, "GET /orders", "GET, HEAD, POST", nil},
		{"", "POST", "/orders", Found, "POST /orders", "GET, HEAD, POST", nil},
		{"", "HEAD", "/orders", Found, "GET /orders", "GET, HEAD, POST", nil},
		{"", "DELETE", "/orders", MethodNotAllowed, "", "GET, HEAD, POST", nil},
		{"", "get", "/orders", MethodNotAllowed, "", "GET, HEAD, POST", nil},
		{"", "GET", "/orders/", Found, "GET /orders/", "GET, HEAD", nil},
		{"", "POST", "/orders/", MethodNotAllowed, "", "GET, HEAD", nil},
		{"", "HEAD", "/orders/7", Found, "HEAD /orders/{id}", "GET, HEAD, PUT", []param{{"id", "7"}}},
		{"", "PUT", "/orders/7", Found, "PUT /orders/{id}", "GET, HEAD, PUT", []param{{"id", "7"}}},
		{"", "GET", "/orders/7/lines/2", Found, "GET /orders/{id}/lines/{line}", "GET, HEAD", []param{{"id", "7"}, {"line", "2"}}},
		{"", "POST", "/orders/7/lines/2", MethodNotAllowed, "", "GET, HEAD", nil},
		{"", "GET", "/orders/7/lines", NotFound, "", "", nil},
		{"", "GET", "/files/caf%C3%A9", Found, "GET /files/{name}", "GET, HEAD", []param{{"name", "caf%C3%A9"}}},
		{"", "GET", "/files/a%2Fb", Found, "GET /files/{name}", "GET, HEAD", []param{{"name", "a%2Fb"}}},
		{"", "GET", "/v1/items:batchGet", Found, "GET /v1/items:batchGet", "GET, HEAD", nil},
		{"", "GET", "/v1/items%3AbatchGet", NotFound, "", "", nil},
		{"", "GET", "/ORDERS", NotFound, "", "", nil},
		{"", "GET", "/only-here", NotFound, "", "", nil},
		{"api.example.com", "GET", "/only-here", Found, "GET api.example.com/only-here", "GET, HEAD", nil},
		{"API.Example.com:8443", "GET", "/only-here", Found, "GET api.example.com/only-here", "GET, HEAD", nil},
		{"api.example.com.", "GET", "/only-here", Found, "GET api.example.com/only-here", "GET, HEAD", nil},
		{"api.example.com.:443", "GET", "/only-here", Found, "GET api.example.com/only-here", "GET, HEAD", nil},
		{"api.example.com", "GET", "/orders", NotFound, "", "", nil}, // a known host never falls back
		{"other.example.com", "GET", "/orders", Found, "GET /orders", "GET, HEAD, POST", nil},
		{"[::1]:8443", "GET", "/v6", Found, "GET ::1/v6", "GET, HEAD", nil},
		{"[::1]", "GET", "/v6", Found, "GET ::1/v6", "GET, HEAD", nil},
		{"::1", "GET", "/v6", Found, "GET ::1/v6", "GET, HEAD", nil},
		{"[::1", "GET", "/orders", Found, "GET /orders", "GET, HEAD, POST", nil},
		{"", "GET", "", NotFound, "", "", nil},
		{"", "GET", "orders", NotFound, "", "", nil},
		// Guards for callers that skip Normalize.
		{"", "GET", "/a/../c", NotFound, "", "", nil},
		{"", "GET", "/orders/..", NotFound, "", "", nil},
		{"", "GET", "/orders/.", NotFound, "", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.host+tc.path, func(t *testing.T) {
			var p Params
			res := tab.Match(tc.host, tc.method, tc.path, &p)
			if res.Status != tc.status {
				t.Fatalf("status %v, want %v (%+v)", res.Status, tc.status, res)
			}
			if h, _ := res.Handler.(string); h != tc.handler {
				t.Errorf("handler %q, want %q", h, tc.handler)
			}
			if res.Allow != tc.allow {
				t.Errorf("Allow %q, want %q", res.Allow, tc.allow)
			}
			if p.Len() != len(tc.params) {
				t.Fatalf("%d params, want %d", p.Len(), len(tc.params))
			}
			for i, w := range tc.params {
				if n, v := p.At(i); n != w.name || v != w.value {
					t.Errorf("param %d = %s=%q, want %s=%q", i, n, v, w.name, w.value)
				}
				if v, ok := p.Get(w.name); !ok || v != w.value {
					t.Errorf("Get(%q) = %q, %v", w.name, v, ok)
				}
			}
			if res.Status == Found {
				if got := fillTemplate(res.Template, &p); got != tc.path {
					t.Errorf("template %q filled with params gives %q, want the path", res.Template, got)
				}
			}
		})
	}
}

func TestMatchConfusable(t *testing.T) {
	tab := mustCompile(t, []Route{
		rt("", "GET", "/orders/{id}"),
		rt("", "GET", "/orders/export"),
		rt("", "GET", "/{tenant}/{action}"),
		rt("", "GET", "/admin/purge"),
		rt("", "GET", "/v1/{name}"),
		rt("", "GET", "/v1/items:admin"),
	})
	cases := []struct {
		path, want string // want "" = NotFound
	}{
		{"/orders/export", "GET /orders/export"},
		{"/orders/12", "GET /orders/{id}"},
		{"/orders/exporter", "GET /orders/{id}"},
		{"/orders/expor", "GET /orders/{id}"},
		{"/orders/EXPORT", ""},
		{"/orders/Export", ""},
		{"/orders/export%3Bx", ""},
		{"/orders/export%3B", ""},
		{"/orders/%65xport%3b", ""}, // not normalised, still refused
		{"/admin/purge", "GET /admin/purge"},
		{"/admin/PURGE", ""}, // would otherwise backtrack to /{tenant}/{action}
		{"/admin/other", "GET /{tenant}/{action}"},
		{"/ADMIN/purge", ""}, // ADMIN is confusable with the literal admin beside {tenant}
		{"/v1/items:admin", "GET /v1/items:admin"},
		{"/v1/items%3Aadmin", ""},
		{"/v1/items%3aadmin", ""},
		{"/v1/ITEMS:admin", ""},
		{"/v1/items:admins", "GET /v1/{name}"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			res := tab.Match("", "GET", tc.path, nil)
			h, _ := res.Handler.(string)
			if h != tc.want {
				t.Fatalf("reached %q (%v), want %q", h, res.Status, tc.want)
			}
		})
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tab := mustCompile(t, []Route{
		rt("api.example.com", "GET", "/orders/{id}/lines/{line}"),
		rt("api.example.com", "GET", "/orders/export"),
		rt("", "GET", "/x"),
	})
	var p Params
	for _, c := range []struct{ host, method, path string }{
		{"API.example.com:443", "GET", "/orders/1/lines/2"},
		{"api.example.com", "DELETE", "/orders/1/lines/2"},
		{"api.example.com", "GET", "/nope"},
		{"api.example.com", "GET", "/orders/EXPORT"},
		{"[::1]:1", "GET", "/x"},
		{strings.Repeat("h", 300), "GET", "/x"},
	} {
		allocs := testing.AllocsPerRun(100, func() { tab.Match(c.host, c.method, c.path, &p) })
		if allocs != 0 {
			t.Errorf("Match(%q, %q, %q): %v allocs", c.host, c.method, c.path, allocs)
		}
	}
	allocs := testing.AllocsPerRun(100, func() { tab.Match("", "GET", "/x", nil) })
	if allocs != 0 {
		t.Errorf("Match with nil Params: %v allocs", allocs)
	}
}

func TestMatchNilTable(t *testing.T) {
	var tab *Table
	if res := tab.Match("", "GET", "/", nil); res.Status != NotFound {
		t.Fatalf("nil table: %v", res.Status)
	}
	empty := mustCompile(t, nil)
	if res := empty.Match("h", "GET", "/", nil); res.Status != NotFound {
		t.Fatalf("empty table: %v", res.Status)
	}
}

func TestMatchWideFanOut(t *testing.T) {
	var routes []Route
	for _, s := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		routes = append(routes, rt("", "GET", "/"+s+"/x"))
	}
	routes = append(routes, rt("", "GET", "/{any}/y"))
	tab := mustCompile(t, routes)
	if res := tab.Match("", "GET", "/j/x", nil); res.Handler != "GET /j/x" {
		t.Fatalf("got %v", res.Handler)
	}
	if res := tab.Match("", "GET", "/j/y", nil); res.Handler != "GET /{any}/y" {
		t.Fatalf("got %v", res.Handler)
	}
	if res := tab.Match("", "GET", "/J/y", nil); res.Status != NotFound {
		t.Fatalf("confusable through the index: got %v", res.Handler)
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{NotFound: "not found", Found: "found", MethodNotAllowed: "method not allowed", 9: "Status(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}
