package waf

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	txhttp "github.com/corazawaf/coraza/v3/http"
)

// BenchmarkVersusWrapHandler compares a handler built on Inspect with the
// naive integration the bench row names: Coraza's own
// http.WrapHandler around the same CRS, configured as its README shows
// (coraza.conf-recommended, crs-setup, all CRS files, engine on). Both
// handlers read the body, decide, and write a small JSON response.
func BenchmarkVersusWrapHandler(b *testing.B) {
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"9b2f6c1e-5d8a-4c3b-9e7f-2a1b3c4d5e6f","status":"accepted"}`))
	})
	naiveWAF, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(`
Include @coraza.conf-recommended
Include @crs-setup.conf.example
Include @owasp_crs/*.conf
SecRuleEngine On
SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
`))
	if err != nil {
		b.Fatal(err)
	}
	naive := txhttp.WrapHandler(naiveWAF, upstream)

	w := mustWAF(b, Config{Mode: ModeBlock})
	gatehouse := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if v := w.Inspect(r, "203.0.113.7", body); v.Block {
			rw.WriteHeader(http.StatusForbidden)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		upstream.ServeHTTP(rw, r)
	})

	body := jsonBody1KiB()
	for _, c := range []struct {
		name string
		req  func() *http.Request
	}{
		{"benign-GET", benignGET},
		{"benign-JSON-1KiB", func() *http.Request {
			r := jsonPOST(body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			return r
		}},
	} {
		for _, h := range []struct {
			name string
			h    http.Handler
		}{{"wraphandler", naive}, {"inspect", gatehouse}} {
			b.Run(c.name+"/"+h.name, func(b *testing.B) {
				for b.Loop() {
					rec := httptest.NewRecorder()
					h.h.ServeHTTP(rec, c.req())
					if rec.Code != http.StatusOK {
						b.Fatalf("status %d", rec.Code)
					}
				}
			})
		}
	}
}
