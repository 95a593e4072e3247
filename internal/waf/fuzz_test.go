package waf

import (
	"bytes"
	"net/http"
	"net/url"
	"testing"
)

// FuzzInspect feeds arbitrary queries, content types and bodies to a blocking
// WAF: Inspect must not panic, and its verdict must be self-consistent.
// go test ./internal/waf -run '^$' -fuzz FuzzInspect -fuzztime 60s
func FuzzInspect(f *testing.F) {
	for _, p := range attacks {
		f.Add(p.target, p.ctype, []byte(p.body))
	}
	for _, p := range benignTwins {
		f.Add(p.target, p.ctype, []byte(p.body))
	}
	f.Add("/x?a=%", "application/json; charset", []byte(`{"a":[[[[[[[[`))
	f.Add("/x", "multipart/form-data; boundary=", []byte("--\r\n\r\n"))
	f.Add("/x", "application/xml", []byte(`<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>`))
	w := mustWAF(f, Config{Mode: ModeBlock, BodyLimit: 4096})
	f.Fuzz(func(t *testing.T, target, ctype string, body []byte) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		r, err := http.NewRequest(http.MethodPost, "http://api.example.com"+u.RequestURI(), bytes.NewReader(body))
		if err != nil {
			return
		}
		r.RequestURI = target
		r.Header.Set("Content-Type", ctype)
		v := w.Inspect(r, "198.51.100.1", body)
		if v.Block && v.Status != 400 && v.Status != 403 && v.Status != 500 {
			t.Errorf("blocking verdict with status %d", v.Status)
		}
		if !v.Block && v.Status != 0 {
			t.Errorf("passing verdict with status %d", v.Status)
		}
		if len(v.RuleIDs) > 0 && !v.Matched {
			t.Errorf("rules %v but Matched false", v.RuleIDs)
		}
	})
}
