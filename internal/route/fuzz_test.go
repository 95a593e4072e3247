package route

import (
	"strings"
	"testing"
)

func FuzzNormalize(f *testing.F) {
	for _, tc := range normalizeCases {
		f.Add(tc.in, tc.opt.AllowEncodedSlash)
	}
	for _, tok := range pathTokens {
		f.Add("/"+tok+"/"+tok, false)
	}
	f.Fuzz(func(t *testing.T, in string, allow bool) {
		checkNormalize(t, in, NormalizeOptions{AllowEncodedSlash: allow})
	})
}

// fuzzRoutes mixes the attacker's table with overlapping templates so that
// backtracking, confusable literals and several hosts are exercised.
func fuzzRoutes() []Route {
	routes := attackRoutes()
	for _, r := range []Route{
		rt("", "GET", "/"),
		rt("", "GET", "/a/b/d"),
		rt("", "GET", "/a/{x}/c"),
		rt("", "PUT", "/a/{x}/{y}"),
		rt("", "GET", "/{t}/{a}/"),
		rt("", "GET", "/admin/purge"),
		rt("", "GET", "/v1/items:admin"),
		rt("", "GET", "/v1/{name}"),
		rt("", "GET", "/files/caf%C3%A9/{v}"),
		rt("[::1]", "GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}"),
	} {
		routes = append(routes, r)
	}
	return routes
}

func FuzzMatch(f *testing.F) {
	tab := mustCompile(f, fuzzRoutes())
	for _, tc := range normalizeCases {
		f.Add(attackHost, "GET", tc.in)
	}
	for _, p := range []string{
		"/orders/v1/orders/1", "/orders/v1/orders/EXPORT", "/a/b/c", "/a/b/d", "/x/y/", "/ADMIN/purge",
		"/v1/items%3Aadmin", "/files/caf%C3%A9/x", "/1/2/3/4/5/6/7/8", "/orders/v1/orders/%2e%2e",
	} {
		f.Add("", "GET", p)
		f.Add("[::1]:1", "HEAD", p)
		f.Add("API.example.com.:1", "PUT", p)
	}
	f.Fuzz(func(t *testing.T, host, method, raw string) {
		var p Params
		tab.Match(host, method, raw, &p) // unnormalised input must not panic either
		if p.Len() > MaxParams {
			t.Fatalf("%d params", p.Len())
		}
		path, err := Normalize(raw, NormalizeOptions{})
		if err != nil {
			return
		}
		res := tab.Match(host, method, path, &p)
		switch res.Status {
		case Found:
			if want := strings.Count(res.Template, "{"); p.Len() != want {
				t.Fatalf("%q matched %s with %d params, want %d", path, res.Template, p.Len(), want)
			}
			if got := fillTemplate(res.Template, &p); got != path {
				t.Fatalf("%q matched %s but the params fill it as %q", path, res.Template, got)
			}
			if res.Allow == "" || res.Handler == nil {
				t.Fatalf("found without Allow or Handler: %+v", res)
			}
		case MethodNotAllowed:
			if res.Allow == "" || p.Len() != 0 {
				t.Fatalf("405 with Allow %q and %d params", res.Allow, p.Len())
			}
		case NotFound:
			if p.Len() != 0 || res.Allow != "" {
				t.Fatalf("404 with %d params, Allow %q", p.Len(), res.Allow)
			}
		default:
			t.Fatalf("status %v", res.Status)
		}
	})
}

// FuzzCompile checks that every template Compile accepts is reachable: its
// literals are canonical, so a request naming it normalises to itself and
// matches it.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{"/", "/a/{x}", "/a/x{y}", "/a//b", "/a/./b", "/{a}/{a}", "/v1/items:x", "/%41", "/a%3Ab/", "/{}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		tab, err := Compile([]Route{{Method: "GET", Path: tmpl, Handler: 1}})
		if err != nil {
			return
		}
		parts := strings.Split(tmpl, "/")
		for i, s := range parts {
			if strings.HasPrefix(s, "{") {
				parts[i] = "v"
			}
		}
		path := strings.Join(parts, "/")
		if got, err := Normalize(path, NormalizeOptions{}); err != nil || got != path {
			t.Fatalf("accepted template %q is not canonical: %q, %v", tmpl, got, err)
		}
		var p Params
		if res := tab.Match("", "GET", path, &p); res.Status != Found || res.Template != tmpl {
			t.Fatalf("accepted template %q does not match %q: %+v", tmpl, path, res)
		}
	})
}
