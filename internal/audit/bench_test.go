package audit

import (
	"testing"
)

func benchWriter(b *testing.B, mode Mode) {
	s, _ := testKeys(b, "bench")
	w, err := Open(Options{Dir: b.TempDir(), Mode: mode, Signer: s})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	rec := sampleRecord(1)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := w.WriteRequest(rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkWriterBuffered(b *testing.B) { benchWriter(b, Buffered) }
func BenchmarkWriterDurable(b *testing.B)  { benchWriter(b, Durable) }

func BenchmarkEncodeRecord(b *testing.B) {
	rec := sampleRecord(1)
	b.ReportAllocs()
	buf := make([]byte, 0, 1024)
	for b.Loop() {
		buf = rec.appendBody(buf[:0])
	}
}
