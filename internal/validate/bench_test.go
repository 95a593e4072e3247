package validate

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkRequestCheck is the validate stage's cost on a route with path,
// query, header and cookie parameters and a small JSON body.
func BenchmarkRequestCheck(b *testing.B) {
	post := validator(b, "POST", "/orders", true)
	get := validator(b, "GET", "/orders", false)
	b.Run("body", func(b *testing.B) {
		r := httptest.NewRequest("POST", "/orders", nil)
		r.Header.Set("Content-Type", "application/json")
		body := []byte(goodOrder)
		b.ReportAllocs()
		for b.Loop() {
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			if res := post.Check(r, nil); res.Status != 0 {
				b.Fatal(res)
			}
		}
	})
	b.Run("params", func(b *testing.B) {
		b.ReportAllocs()
		r := httptest.NewRequest("GET", "/orders?limit=10&status=open&tags=a", nil)
		r.Header.Set("X-Trace-Id", "0123456789abcdef")
		for b.Loop() {
			if res := get.Check(r, nil); res.Status != 0 {
				b.Fatal(res)
			}
		}
	})
}

// BenchmarkFilter is documented-mode filtering of a ~2 KB leaky body.
func BenchmarkFilter(b *testing.B) {
	f := responseFilter(b, "GET", "/orders", Enforce, "ssn")
	body := []byte("[" + strings.Repeat(strings.ReplaceAll(leakyOrder, "\n", "")+",", 3) + strings.ReplaceAll(leakyOrder, "\n", "") + "]")
	out := make([]byte, 0, len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if out, _, err = f.Filter(out[:0], body, 200, "application/json", false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkScanJSON(b *testing.B) {
	body := []byte(goodOrder)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ScanJSON(body, 32); err != nil {
			b.Fatal(err)
		}
	}
}
