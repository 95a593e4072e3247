package detect

import (
	"net/netip"
	"testing"
	"time"
)

func BenchmarkProcessAllowed(b *testing.B) {
	en := NewEngine(Options{})
	e := Event{Time: time.Now(), Consumer: "acme-billing", Partner: "acme", Credential: "k1", ClientIP: netip.MustParseAddr("10.0.0.1"),
		API: "orders", Version: "v1", Operation: "getOrder", ObjectID: "42", Status: 200, BytesOut: 210}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e.Time = e.Time.Add(time.Millisecond)
		en.Observe(e)
	}
}

func BenchmarkProcessAnonymous(b *testing.B) {
	en := NewEngine(Options{})
	e := Event{Time: time.Now(), ClientIP: netip.MustParseAddr("10.0.0.1"),
		API: "orders", Version: "v1", Operation: "getOrder", ObjectID: "42", Status: 200, BytesOut: 210}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e.Time = e.Time.Add(time.Millisecond)
		en.Observe(e)
	}
}

// TestProcessAllocatesNothing: the detectors run on every request; their
// steady state must not allocate (keys are structs, reporters prebuilt).
func TestProcessAllocatesNothing(t *testing.T) {
	en := NewEngine(Options{})
	e := Event{Time: time.Now(), Consumer: "acme-billing", Partner: "acme", Credential: "k1", ClientIP: netip.MustParseAddr("10.0.0.1"),
		API: "orders", Version: "v1", Operation: "getOrder", ObjectID: "42", Status: 200, BytesOut: 210}
	en.Observe(e) // first sight creates the per-key state
	allocs := testing.AllocsPerRun(1000, func() {
		e.Time = e.Time.Add(time.Millisecond)
		en.Observe(e)
	})
	if allocs > 0 {
		t.Errorf("Process allocates %.1f times per event", allocs)
	}
}
