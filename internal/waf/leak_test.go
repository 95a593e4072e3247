package waf

import (
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// benchRequests are the shapes Inspect sees most: a GET with typical API
// headers, a 1 KiB JSON POST, and an attack.
func benignGET() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://api.example.com/orders/v2/orders/9b2f6c1e-5d8a-4c3b-9e7f-2a1b3c4d5e6f?include=items&limit=20", nil)
	h := r.Header
	h.Set("User-Agent", "acme-billing/2.3 (+https://acme.example)")
	h.Set("Accept", "application/json")
	h.Set("Accept-Encoding", "gzip")
	h.Set("Authorization", "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJl")
	h.Set("X-Request-Id", "01J9Z3K8M2Q4R6T8V0X2Z4B6D8")
	h.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	return r
}

// jsonBody1KiB is a 1 KiB order as a shop API receives it: 35 leaf values.
// CRS evaluates its argument rules once per JSON leaf, so Inspect's cost
// grows with the number of fields, not bytes (about 0.17 ms per field).
func jsonBody1KiB() []byte {
	body := `{"customer_id":"9b2f6c1e-5d8a-4c3b-9e7f-2a1b3c4d5e6f","currency":"EUR","channel":"web",` +
		`"shipping":{"name":"Seán O'Brien","street":"12 Baker's Row","city":"Dublin","postcode":"D02 X285","country":"IE","phone":"+353 1 555 0100"},` +
		`"billing_same_as_shipping":true,"items":[` +
		`{"sku":"SKU-10023","name":"Espresso beans, 1 kg","qty":2,"unit_price":"19.90"},` +
		`{"sku":"SKU-20417","name":"Ceramic cup (set of 4)","qty":1,"unit_price":"24.00"},` +
		`{"sku":"SKU-30001","name":"Descaler","qty":1,"unit_price":"7.50"},` +
		`{"sku":"SKU-40990","name":"Gift card","qty":1,"unit_price":"25.00"}],` +
		`"note":"Please ring twice. If nobody answers, leave the parcel with the neighbour at no. 14 or in the green box by the garage door. The bell is broken at weekends, so please knock loudly and patiently, or give us a call on the phone number above before you drive off. Thank you!",` +
		`"coupon":"SPRING26","gift_wrap":false,"gift_message":"","metadata":{"source":"mobile-app","app_version":"5.12.0","locale":"en-IE","experiment":"checkout-v3","referrer":"newsletter-2026-03"}}`
	return []byte(body)
}

// smallJSON is a typical create request: a handful of fields.
var smallJSON = []byte(`{"sku":"SKU-10023","qty":2,"note":"Leave it with Seán O'Brien"}`)

func jsonPOST(body []byte) *http.Request {
	r := benignGET()
	r.Method = http.MethodPost
	r.RequestURI = "/orders/v2/orders"
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Content-Length", itoa(len(body)))
	r.ContentLength = int64(len(body))
	return r
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// TestInspectionsStayBounded runs 10,000 inspections (benign, body, attack)
// and checks that transactions are released: no goroutines left behind and
// no heap growth beyond noise. Under -race it runs 300: the race detector
// slows Coraza about fifteenfold, and this test is about leaks, not races.
func TestInspectionsStayBounded(t *testing.T) {
	w := mustWAF(t, Config{Mode: ModeBlock})
	get := benignGET()
	body := smallJSON
	post := jsonPOST(body)
	attack := httptest.NewRequest(http.MethodGet, "http://api.example.com/orders?id=1%27%20OR%20%271%27%3D%271", nil)
	attack.Header.Set("User-Agent", "Mozilla/5.0")
	attack.Header.Set("Accept", "*/*")

	n, warm := 10_000, 300
	if raceEnabled {
		n, warm = 300, 30
	}
	run := func(k int) {
		for i := range k {
			switch i % 3 {
			case 0:
				if v := w.Inspect(get, "203.0.113.7", nil); v.Block {
					t.Fatalf("benign GET blocked: %+v", v)
				}
			case 1:
				if v := w.Inspect(post, "203.0.113.7", body); v.Block {
					t.Fatalf("benign POST blocked: %+v", v)
				}
			case 2:
				if v := w.Inspect(attack, "203.0.113.7", nil); !v.Block {
					t.Fatalf("attack passed: %+v", v)
				}
			}
		}
	}
	run(warm) // warm Coraza's transaction pool and lazy state

	goroutines := runtime.NumGoroutine()
	before := heapAfterGC()
	start := time.Now()
	run(n)
	elapsed := time.Since(start)
	after := heapAfterGC()

	growth := int64(after) - int64(before)
	t.Logf("%d inspections in %v (%.0f µs each); heap %0.1f → %0.1f MiB", n, elapsed.Round(time.Millisecond),
		float64(elapsed.Microseconds())/float64(n), mib(before), mib(after))
	// A leaked transaction keeps its collections (tens of KiB): 10,000 of them
	// would be hundreds of MiB. 4 MiB is room for pools and GC timing.
	if growth > 4<<20 {
		t.Errorf("heap grew by %.1f MiB over %d inspections", mib(uint64(growth)), n)
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		t.Errorf("goroutines: %d before, %d after", goroutines, g)
	}
}

// TestConcurrentInspect shares one instance between goroutines; run with -race.
func TestConcurrentInspect(t *testing.T) {
	w := mustWAF(t, Config{Mode: ModeBlock})
	body := smallJSON
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				if (g+i)%2 == 0 {
					if v := w.Inspect(benignGET(), "203.0.113.7", nil); v.Block {
						t.Errorf("benign GET blocked: %+v", v)
					}
					continue
				}
				if v := w.Inspect(jsonPOST(body), "203.0.113.7", body); v.Block {
					t.Errorf("benign POST blocked: %+v", v)
				}
			}
		})
	}
	wg.Wait()
}

// Coraza writes multipart file parts to temporary files; Inspect must leave
// none behind.
func TestMultipartTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	w := mustWAF(t, Config{Mode: ModeBlock})
	body := []byte("--XyZ\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"me.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG....\r\n--XyZ--\r\n")
	r := httptest.NewRequest(http.MethodPost, "http://api.example.com/profile", nil)
	r.Header.Set("Content-Type", "multipart/form-data; boundary=XyZ")
	r.Header.Set("Content-Length", itoa(len(body)))
	for range 5 {
		if v := w.Inspect(r, "203.0.113.7", body); v.Block {
			t.Fatalf("upload blocked: %+v", v)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("%d temporary files left in %s", len(left), dir)
	}
}

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
