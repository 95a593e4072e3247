package discover

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		seg  string
		want Kind
	}{
		// Identifiers become parameters...
		{"42", KindInt},
		{"0", KindInt},
		{"9223372036854775807", KindInt},
		{"92233720368547758070", KindString}, // too long for int64
		{"550e8400-e29b-41d4-a716-446655440000", KindUUID},
		{"550E8400-E29B-41D4-A716-446655440000", KindUUID},
		{"2026-11-27", KindDate},
		{"da39a3ee5e6b4b0d3255bfef95601890afd80709", KindHex},
		{"5f2b9c0e1a3d4e6f", KindHex},
		{"cus_9aB3kLm2Qx", KindString},
		{"AKIA4X7QZ2M9T1", KindString},
		{"inv_8fK2mQ9xLp3Z", KindString},
		{"eyJhbGciOiJIUzI1NiJ9", KindString},
		{strings.Repeat("a", 65), KindString}, // longer than any literal we keep
		// ...and their near misses stay literal.
		{"orders", KindLiteral},
		{"v1", KindLiteral},
		{"v2beta1", KindLiteral},
		{"oauth2", KindLiteral},
		{"base64url", KindLiteral},
		{"x509certificates", KindLiteral},
		{"deadbeefdeadbeef", KindLiteral},                    // hex letters only: a word-like literal
		{"5f2b9c0e1a3d4e6", KindString},                      // too short for hex, but machine-made
		{"550e8400-e29b-41d4-a716-44665544000g", KindString}, // not a UUID: an id all the same
		{"2026-13-01", KindLiteral},                          // no month 13
		{"2026-1-01", KindLiteral},
		{"users", KindLiteral},
		{"audit-log", KindLiteral},
		{"", KindLiteral},
		{"%7B%7D", KindLiteral},
		{strings.Repeat("a", 64), KindLiteral},
	}
	for _, c := range cases {
		if got := Classify(c.seg); got != c.want {
			t.Errorf("Classify(%q) = %v, want %v", c.seg, got, c.want)
		}
	}
}

func TestTemplatize(t *testing.T) {
	cases := map[string]string{
		"/":                             "/",
		"/orders":                       "/orders",
		"/orders/":                      "/orders/",
		"/orders/42":                    "/orders/{int}",
		"/orders/42/items/7":            "/orders/{int}/items/{int}",
		"/reports/2026-01-31/summary":   "/reports/{date}/summary",
		"/repos/a/b/commits/" + sha1hex: "/repos/a/b/commits/{hex}",
		"x":                             "",
	}
	for in, want := range cases {
		if got := Templatize(in); got != want {
			t.Errorf("Templatize(%q) = %q, want %q", in, got, want)
		}
	}
}

const sha1hex = "da39a3ee5e6b4b0d3255bfef95601890afd80709"

func TestShapeAndKinds(t *testing.T) {
	if s := Shape("/orders/{orderId}/items/{int}"); s != "/orders/{}/items/{}" {
		t.Errorf("Shape = %q", s)
	}
	if k := ParamKinds("/a/{int}/b/{uuid}/{str}"); len(k) != 3 || k[0] != KindInt || k[1] != KindUUID || k[2] != KindString {
		t.Errorf("ParamKinds = %v", k)
	}
	if got := unionTemplate("/a/{int}/b", "/a/{uuid}/b"); got != "/a/{str}/b" {
		t.Errorf("unionTemplate = %q", got)
	}
	if got := unionTemplate("/a/{int}", "/a/{int}"); got != "/a/{int}" {
		t.Errorf("unionTemplate same = %q", got)
	}
}

func FuzzTemplatize(f *testing.F) {
	for _, s := range []string{"/", "/orders/42", "/a/" + sha1hex, "/x/2026-01-01/550e8400-e29b-41d4-a716-446655440000", "//", "/%41/é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		tmpl := Templatize(path)
		if path == "" || path[0] != '/' {
			if tmpl != "" {
				t.Fatalf("Templatize(%q) = %q for a non-path", path, tmpl)
			}
			return
		}
		// Same number of segments, and templating is idempotent.
		if strings.Count(tmpl, "/") != strings.Count(path, "/") {
			t.Fatalf("segments changed: %q -> %q", path, tmpl)
		}
		if again := Templatize(tmpl); again != tmpl {
			t.Fatalf("not idempotent: %q -> %q -> %q", path, tmpl, again)
		}
		if len(Shape(tmpl)) > len(tmpl) {
			t.Fatalf("shape longer than template: %q", tmpl)
		}
	})
}
