package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Buffered mode hands records to the OS within the flush window, and the
// interval checkpoint signs them, without waiting for Close.
func TestBufferedFlushAndIntervalCheckpoint(t *testing.T) {
	s, v := testKeys(t, "flush")
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, Mode: Buffered, Signer: s, CheckpointInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := time.Now()
	if err := w.WriteRequest(sampleRecord(7)); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, segmentName(1))
	waitFor(t, time.Second, "the record on disk", func() bool {
		b, _ := os.ReadFile(seg)
		return bytes.Contains(b, []byte(`"request_id":"req-7"`))
	})
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("record reached the file after %s; the window is 100 ms", d)
	}
	waitFor(t, 2*time.Second, "an interval checkpoint", func() bool { return w.Stats().Checkpoints >= 1 })
	rep, err := Verify(dir, v)
	if err != nil || rep.Broken != nil || rep.Signed != 1 {
		t.Fatalf("verify while running: %+v, %v", rep, err)
	}
}

// Segments rotate by size and by age; the chain continues across them.
func TestSegmentRotation(t *testing.T) {
	s, v := testKeys(t, "rot")
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, Mode: Durable, Signer: s, SegmentMaxBytes: 4096, SegmentMaxAge: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if err := w.WriteRequest(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := listSegments(dir)
	bySize := len(segs)
	if bySize < 3 {
		t.Fatalf("%d segments after 30 records of ~500 bytes with a 4 KiB limit", bySize)
	}
	if err := w.WriteRequest(sampleRecord(99)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "rotation by age", func() bool {
		segs, _ := listSegments(dir)
		return len(segs) > bySize
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, v)
	if err != nil || rep.Broken != nil || rep.Records != 31 || rep.Signed != 31 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}
