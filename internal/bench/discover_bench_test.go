package bench

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse/gatehouse/internal/discover"
)

// BenchmarkProxyServeHTTPDiscovery is BenchmarkProxyServeHTTP's gatehouse
// row with and without traffic discovery attached (as `serve` attaches it
// by default), so the difference is discovery's cost per request.
func BenchmarkProxyServeHTTPDiscovery(b *testing.B) {
	up := httptest.NewServer(upstreamHandler())
	defer up.Close()
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			gw := newInProcessGateway(b, up.URL)
			if on {
				gw.SetObserver(discover.NewObserver(discover.Options{}))
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodGet, benchPath, nil)
					req.RemoteAddr = "127.0.0.1:40000"
					w := discardWriter{h: http.Header{}}
					gw.ServeHTTP(&w, req)
					if w.status != http.StatusOK {
						b.Errorf("status %d", w.status)
						return
					}
				}
			})
		})
	}
}

// BenchmarkNotFoundDiscovery: an unrouted request (no upstream round trip),
// where discovery's share of the work is largest.
func BenchmarkNotFoundDiscovery(b *testing.B) {
	up := httptest.NewServer(upstreamHandler())
	defer up.Close()
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			gw := newInProcessGateway(b, up.URL)
			if on {
				gw.SetObserver(discover.NewObserver(discover.Options{}))
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				req := httptest.NewRequest(http.MethodGet, "/internal/debug/12345/vars", nil)
				req.RemoteAddr = "127.0.0.1:40000"
				w := discardWriter{h: http.Header{}}
				gw.ServeHTTP(&w, req)
				if w.status != http.StatusNotFound {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}
