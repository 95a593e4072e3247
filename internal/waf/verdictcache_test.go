package waf

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// TestVerdictCache: a repeated bodyless request gets the verdict a fresh
// inspection gives, clean or blocked; changing any header value, the
// query, the method, the Host or the client IP is a different key; and the
// cache stays bounded.
func TestVerdictCache(t *testing.T) {
	// Own instances: shared ones carry other tests' cached verdicts.
	w, err := New(Config{Mode: ModeBlock})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fresh, err := New(Config{Mode: ModeBlock})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	attack := func() *http.Request {
		r := benignGET()
		r.Header.Set("Cookie", "pref=' UNION SELECT password FROM users--")
		return r
	}
	cases := []struct {
		name string
		req  func() *http.Request
		ip   string
	}{
		{"benign", benignGET, "203.0.113.7"},
		{"attack", attack, "203.0.113.7"},
		{"benign other ip", benignGET, "203.0.113.8"},
		{"attack in the query", func() *http.Request {
			r := benignGET()
			r.RequestURI = "/orders?id=1%27%20OR%20%271%27%3D%271"
			return r
		}, "203.0.113.7"},
		{"attack in a second header value", func() *http.Request {
			r := benignGET()
			r.Header.Add("Accept", "<script>alert(1)</script>")
			return r
		}, "203.0.113.7"},
		{"method", func() *http.Request { r := benignGET(); r.Method = "DELETE"; return r }, "203.0.113.7"},
		{"host", func() *http.Request { r := benignGET(); r.Host = "127.0.0.1"; return r }, "203.0.113.7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := fresh.inspectUncached(tc.req(), tc.ip)
			for i := 0; i < 3; i++ { // miss, then hits
				got := w.Inspect(tc.req(), tc.ip, nil)
				if got.Block != want.Block || got.Score != want.Score || !slices.Equal(got.RuleIDs, want.RuleIDs) {
					t.Fatalf("try %d: got %+v, want %+v", i, got, want)
				}
			}
		})
	}
	if n := w.verdicts.len(); n != len(cases) {
		t.Errorf("%d cached verdicts, want %d (one per distinct request)", n, len(cases))
	}
	for i := 0; i < verdictCacheSize+100; i++ {
		r := httptest.NewRequest(http.MethodGet, "/items?page="+itoa(i), nil)
		w.Inspect(r, "203.0.113.7", nil)
	}
	if n := w.verdicts.len(); n > verdictCacheSize {
		t.Errorf("cache holds %d verdicts, bound is %d", n, verdictCacheSize)
	}
}

func (w *WAF) inspectUncached(r *http.Request, ip string) Verdict {
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	return w.inspect(r, uri, proto, ip, nil)
}
